"""The one home of value checks for configs and flags: a rule says what is expected, ``check``
raises ``ValueError("name: expected <what>, got <value>")``.  The command line's argparse types
(rnnkit.cli.args) are built from the same rules, so a flag and its config field agree; the
config helpers of rnnkit.checks.arrays (check_positive, check_choice, check_fields) call these."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from rnnkit.errors import SettingError


@dataclass(frozen=True)
class Rule:
    what: str  # "a positive integer", ...: the message's expectation
    ok: Callable[[object], bool]


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _speeds_ok(v: str) -> bool:
    try:
        speeds = [float(part) for part in v.split(",")]
    except ValueError:
        return False
    return all(math.isfinite(s) and 0.5 <= s <= 2 for s in speeds)


POSITIVE_INT = Rule("a positive integer", lambda v: _is_int(v) and v >= 1)
NONNEG_INT = Rule("an integer >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE_NUMBER = Rule("a finite number > 0", lambda v: _is_number(v) and v > 0)
NONNEG_NUMBER = Rule("a finite number >= 0", lambda v: _is_number(v) and v >= 0)
FINITE_OR_NONE = Rule("a finite number or None", lambda v: v is None or _is_number(v))
SPEEDS = Rule("comma-separated speeds in [0.5, 2] (e.g. 0.9,1.0,1.1)", lambda v: isinstance(v, str) and _speeds_ok(v))
RATE = Rule("a rate in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)  # dropout probabilities


def check(name: str, value, rule: Rule):
    """``value`` if it satisfies ``rule``, else ValueError naming ``name``, the expectation and the value."""
    if not rule.ok(value):
        raise ValueError(f"{name}: expected {rule.what}, got {value!r}")
    return value


def check_each(obj, rule: Rule, *names: str) -> None:
    """:func:`check` every named attribute of ``obj`` (a config dataclass) against ``rule``."""
    for name in names:
        check(name, getattr(obj, name), rule)


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(str, choices))}, got {value!r}")


def env_choice(var: str, choices) -> str | None:
    """The environment variable ``var`` (stripped), None if unset or empty; a value not in ``choices`` is a
    :class:`rnnkit.errors.SettingError` naming the variable (one line, exit 2 on the command line)."""
    env = os.environ.get(var, "").strip()
    if env and env not in choices:
        raise SettingError(f"{var}: expected one of {', '.join(choices)}, got {env!r}")
    return env or None
