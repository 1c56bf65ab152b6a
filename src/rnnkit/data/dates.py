"""The default seq2seq corpus: human-readable dates -> ISO 8601, generated in code (no download).

    "3 March 1998", "march 3, 1998", "03/03/98", "Tuesday, March 3, 1998",
    "3.3.1998", "1998 Mar 03", "the 3rd of March 1998", ...   ->  "1998-03-03"

Dates: every day from 1 January 1950 to 31 December 2049 (``YEAR_MIN`` ..
``YEAR_MAX``, 36,525 days).  Two-digit years are read in that window
(50..99 -> 1950..1999, 00..49 -> 2000..2049), so no string is ambiguous.
Numeric conventions are fixed by separator: ``m/d/y`` with slashes (US),
``d.m.y`` with dots (European), ``y-m-d`` and ``y/m/d`` with a 4-digit year
first.  Names are English (not the locale's).

Splits are by the DATE, so the model is tested on days it never saw: a day
goes to test if the first 8 bytes of BLAKE2b(ISO string), read as a fraction
of 2**64, are below 0.10, to val if below 0.15, else to train (3,697 test,
1,815 val and 31,013 train days).  The split depends on the date only,
never on the seed.  A seed draws, reproducibly, the examples: train days with
replacement, val and test days without replacement (so ``n_test`` distinct
held-out dates; up to ``len(split_days("test"))``), each with a format drawn
uniformly from ``FORMATS``.

``FORMATS`` are templates over the fields of ``_fields``; ``parse`` reads a
string back with ``datetime.strptime`` (an independent check of the renderer).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re

import numpy as np

from rnnkit.data.pairs import ParallelText

YEAR_MIN, YEAR_MAX = 1950, 2049
SPLIT_BOUNDS = {"test": (0.0, 0.10), "val": (0.10, 0.15), "train": (0.15, 1.0)}

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

FORMATS = (
    "{d} {Month} {yyyy}",                 # 3 March 1998
    "{d} {month} {yyyy}",                 # 3 march 1998
    "{dd} {Month} {yyyy}",                # 03 March 1998
    "{d} {Mon} {yyyy}",                   # 3 Mar 1998
    "{d} {Mon} {yy}",                     # 3 Mar 98
    "{Month} {d}, {yyyy}",                # March 3, 1998
    "{month} {d}, {yyyy}",                # march 3, 1998
    "{MONTH} {d}, {yyyy}",                # MARCH 3, 1998
    "{Mon} {d}, {yyyy}",                  # Mar 3, 1998
    "{Month} {do}, {yyyy}",               # March 3rd, 1998
    "the {do} of {Month} {yyyy}",         # the 3rd of March 1998
    "{do} {Month} {yyyy}",                # 3rd March 1998
    "{Weekday}, {Month} {d}, {yyyy}",     # Tuesday, March 3, 1998
    "{Weekday} {d} {Month} {yyyy}",       # Tuesday 3 March 1998
    "{Wkd}, {d} {Mon} {yyyy}",            # Tue, 3 Mar 1998
    "{weekday}, {month} {do} {yyyy}",     # tuesday, march 3rd 1998
    "{mm}/{dd}/{yy}",                     # 03/03/98
    "{m}/{d}/{yy}",                       # 3/3/98
    "{m}/{d}/{yyyy}",                     # 3/3/1998
    "{mm}/{dd}/{yyyy}",                   # 03/03/1998
    "{d}.{m}.{yyyy}",                     # 3.3.1998
    "{dd}.{mm}.{yyyy}",                   # 03.03.1998
    "{dd}.{mm}.{yy}",                     # 03.03.98
    "{yyyy} {Mon} {dd}",                  # 1998 Mar 03
    "{yyyy}/{mm}/{dd}",                   # 1998/03/03
    "{yyyy}-{mm}-{dd}",                   # 1998-03-03
    "{yyyy}{mm}{dd}",                     # 19980303
    "{dd}-{Mon}-{yyyy}",                  # 03-Mar-1998
    "{dd}-{MON}-{yy}",                    # 03-MAR-98
    "{Mon} {d} '{yy}",                    # Mar 3 '98
)

_STRPTIME = {"d": "%d", "dd": "%d", "do": "%d", "m": "%m", "mm": "%m", "Mon": "%b", "MON": "%b",
             "Month": "%B", "month": "%B", "MONTH": "%B", "yy": "%y", "yyyy": "%Y",
             "Wkd": "%a", "Weekday": "%A", "weekday": "%A"}
_ORDINAL = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b")


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fields(day: dt.date) -> dict:
    month, weekday = _MONTHS[day.month - 1], _WEEKDAYS[day.weekday()]
    return {"d": str(day.day), "dd": f"{day.day:02d}", "do": _ordinal(day.day),
            "m": str(day.month), "mm": f"{day.month:02d}",
            "Month": month, "month": month.lower(), "MONTH": month.upper(), "Mon": month[:3], "MON": month[:3].upper(),
            "yyyy": str(day.year), "yy": f"{day.year % 100:02d}",
            "Weekday": weekday, "weekday": weekday.lower(), "Wkd": weekday[:3]}


def render(day: dt.date, fmt: str) -> str:
    """The date written in template ``fmt`` (one of FORMATS, or any template over the same fields)."""
    return fmt.format(**_fields(day))


def parse(text: str, fmt: str) -> dt.date:
    """Read ``text`` written in template ``fmt`` back with ``datetime.strptime`` (case-insensitive names).

    Ordinal suffixes are removed first; two-digit years are mapped into YEAR_MIN..YEAR_MAX.
    Names are matched in the process's LC_TIME locale: English unless the program called
    ``locale.setlocale`` (Python starts in the C locale).
    """
    pattern = re.sub(r"\{(\w+)\}", lambda m: _STRPTIME[m.group(1)], fmt.replace("%", "%%"))
    if "{do}" in fmt:
        text = _ORDINAL.sub(r"\1", text)
    day = dt.datetime.strptime(text, pattern).date()
    if "{yy}" in fmt and day.year > YEAR_MAX:  # strptime's window is 1969..2068
        day = day.replace(year=day.year - 100)
    return day


def _fraction(day: dt.date) -> float:
    h = hashlib.blake2b(day.isoformat().encode("ascii"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


@functools.lru_cache(maxsize=None)
def split_days(split: str) -> tuple:
    """All days of ``split`` ("train", "val" or "test") in calendar order (see the module docstring)."""
    if split not in SPLIT_BOUNDS:
        raise ValueError(f"split: expected one of {tuple(SPLIT_BOUNDS)}, got {split!r}")
    lo, hi = SPLIT_BOUNDS[split]
    first, last = dt.date(YEAR_MIN, 1, 1).toordinal(), dt.date(YEAR_MAX, 12, 31).toordinal()
    days = (dt.date.fromordinal(k) for k in range(first, last + 1))
    return tuple(d for d in days if lo <= _fraction(d) < hi)


def date_pairs(split: str, n: int, seed: int = 0) -> ParallelText:
    """``n`` (human-readable date, ISO date) pairs of ``split``, reproducible from ``seed``.

    Train days are drawn with replacement; val/test days without, so ``n`` may
    not exceed the number of days in those splits (ValueError).
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    days = split_days(split)
    rng = np.random.default_rng([int(seed), tuple(SPLIT_BOUNDS).index(split)])
    if split == "train":
        pick = rng.integers(0, len(days), n)
    elif n > len(days):
        raise ValueError(f"n: the {split} split has {len(days)} distinct dates, asked for {n}")
    else:
        pick = rng.choice(len(days), n, replace=False)
    fmts = rng.integers(0, len(FORMATS), n)
    src = tuple(render(days[k], FORMATS[f]) for k, f in zip(pick.tolist(), fmts.tolist()))
    tgt = tuple(days[k].isoformat() for k in pick.tolist())
    return ParallelText(src, tgt, tuple(range(1, n + 1)), (), f"dates:{split}:seed={seed}")


def dates_corpus(n_train: int = 20_000, n_val: int = 500, n_test: int = 2_000, seed: int = 0) -> dict:
    """{"train", "val", "test"} -> ParallelText of date pairs (disjoint dates across splits)."""
    return {"train": date_pairs("train", n_train, seed), "val": date_pairs("val", n_val, seed),
            "test": date_pairs("test", n_test, seed)}
