"""argparse types: each flag value checked on parsing with the rules of :mod:`rnnkit.checks.rules`
(the same a config applies), a one-line message naming what was expected."""
from __future__ import annotations

import argparse
import math
import sys

from rnnkit.io.distributed import launched_rank
from rnnkit.checks.rules import NONNEG_INT, NONNEG_NUMBER, POSITIVE_INT, POSITIVE_NUMBER, RATE, SPEEDS, Rule


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``rnnkit: error: MESSAGE (see PROG --help)``,
    printed by the first MPI rank only, exit code 2; subcommand parsers inherit the class."""

    def error(self, message, prog: str | None = None):
        if launched_rank() == 0:
            sys.stderr.write(f"rnnkit: error: {message} (see {prog or self.prog} --help)\n")
        raise SystemExit(2)

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if not hasattr(ns, "_command_prog"):  # the innermost (sub)command parsed sets it first
            ns._command_prog = self.prog
        return ns, extras

    def parse_args(self, args=None, namespace=None):
        """As argparse's, an unknown flag pointing to the help of the command it was given to."""
        ns, extras = self.parse_known_args(args, namespace)
        prog = vars(ns).pop("_command_prog", self.prog)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}", prog)
        return ns


def _arg_type(convert, rule: Rule, parse_what: str):
    """argparse type: ``convert(s)`` satisfying ``rule``; else a message naming what was expected."""

    def parse(s: str):
        try:
            v = convert(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {parse_what}, got {s!r}") from None
        if not rule.ok(v):
            raise argparse.ArgumentTypeError(f"expected {rule.what}, got {s!r}")
        return v

    return parse


positive_int = _arg_type(int, POSITIVE_INT, POSITIVE_INT.what)
nonneg_int = _arg_type(int, NONNEG_INT, NONNEG_INT.what)
nonneg_float = _arg_type(float, NONNEG_NUMBER, "a number >= 0")
positive_float = _arg_type(float, POSITIVE_NUMBER, "a number > 0")
rate = _arg_type(float, RATE, "a number in [0, 1)")
speeds = _arg_type(str, SPEEDS, SPEEDS.what)


def zero_one(text: str) -> bool:
    """A 0/1 flag (as ONNX writes its integer attributes): "1" -> True, "0" -> False."""
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")
    return text == "1"


def forget_bias_arg(text: str):
    """``--forget-bias``: a finite number, or 'none' (the initialisation's default bias)."""
    if text.lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number or 'none', got {text!r}")
    return v


def comma_list(value, allowed: tuple, flag: str, what: str = "bench") -> tuple:
    """``--flag a,b`` -> ("a", "b"), each one of ``allowed`` (None: all of them)."""
    from rnnkit.errors import UserError

    if value is None:
        return allowed
    items = tuple(value.split(","))
    bad = [v for v in items if v not in allowed]
    if bad:
        raise UserError(f"{what}: {flag} expects a comma list of {', '.join(allowed)}, got {bad[0]!r}")
    return items
