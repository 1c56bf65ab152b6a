"""argparse types: each flag value checked on parsing, a one-line message naming what was expected."""
from __future__ import annotations

import argparse


def _number(s: str, convert, ok, what: str, bad_value: str):
    """argparse type: ``convert(s)`` that satisfies ``ok``, else a message naming what was expected."""
    try:
        v = convert(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {bad_value}, got {s!r}")
    return v


def positive_int(s: str) -> int:
    return _number(s, int, lambda v: v >= 1, "a positive integer", "a positive integer")


def nonneg_int(s: str) -> int:
    return _number(s, int, lambda v: v >= 0, "an integer >= 0", "an integer >= 0")


def nonneg_float(s: str) -> float:
    return _number(s, float, lambda v: 0 <= v < float("inf"), "a number >= 0", "a finite number >= 0")


def positive_float(s: str) -> float:
    return _number(s, float, lambda v: 0 < v < float("inf"), "a number > 0", "a finite number > 0")
