"""The dates corpus: hand-checked renderings, every format parses back, no ambiguity, disjoint deterministic splits."""
import datetime as dt

import numpy as np
import pytest

from rnnkit.data.dates import FORMATS, YEAR_MAX, YEAR_MIN, date_pairs, dates_corpus, parse, render, split_days

DAY = dt.date(1998, 3, 3)  # a Tuesday


@pytest.mark.parametrize("fmt, expected", [
    ("{d} {Month} {yyyy}", "3 March 1998"),
    ("{month} {d}, {yyyy}", "march 3, 1998"),
    ("{mm}/{dd}/{yy}", "03/03/98"),
    ("{Weekday}, {Month} {d}, {yyyy}", "Tuesday, March 3, 1998"),
    ("{d}.{m}.{yyyy}", "3.3.1998"),
    ("{yyyy} {Mon} {dd}", "1998 Mar 03"),
    ("the {do} of {Month} {yyyy}", "the 3rd of March 1998"),
    ("{dd}-{MON}-{yy}", "03-MAR-98"),
    ("{Mon} {d} '{yy}", "Mar 3 '98"),
    ("{yyyy}{mm}{dd}", "19980303"),
])
def test_hand_written_renderings(fmt, expected):
    assert fmt in FORMATS
    assert render(DAY, fmt) == expected
    assert parse(expected, fmt) == DAY


def test_ordinals_and_two_digit_years_by_hand():
    assert [render(dt.date(2011, 1, d), "{do}") for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    assert parse("1/2/49", "{m}/{d}/{yy}") == dt.date(2049, 1, 2)
    assert parse("1/2/50", "{m}/{d}/{yy}") == dt.date(1950, 1, 2)
    assert parse("12.1.69", "{d}.{m}.{yy}") == dt.date(1969, 1, 12)


def test_every_format_parses_back_by_strptime():
    """All formats, on 1,500 random days of the range plus its edges: datetime.strptime gives the same ISO date."""
    rng = np.random.default_rng(0)
    lo, hi = dt.date(YEAR_MIN, 1, 1).toordinal(), dt.date(YEAR_MAX, 12, 31).toordinal()
    days = [dt.date.fromordinal(int(k)) for k in rng.integers(lo, hi + 1, 1500)] + [
        dt.date(YEAR_MIN, 1, 1), dt.date(YEAR_MAX, 12, 31), dt.date(2000, 2, 29), dt.date(1999, 12, 31)]
    for fmt in FORMATS:
        for day in days:
            s = render(day, fmt)
            assert parse(s, fmt).isoformat() == day.isoformat(), f"format {fmt!r}: {s!r} parsed to another date"


def test_no_string_names_two_dates():
    """Every day of 12 years (both ends of the two-digit-year window, the century turn) in every format."""
    seen = {}
    for year in (1950, 1951, 1952, 1968, 1969, 1970, 1999, 2000, 2001, 2047, 2048, 2049):
        d = dt.date(year, 1, 1)
        while d.year == year:
            for fmt in FORMATS:
                s = render(d, fmt)
                assert seen.setdefault(s, d) == d, f"{s!r} ({fmt!r}) names both {seen[s]} and {d}"
            d += dt.timedelta(days=1)


def test_splits_disjoint_by_date_and_sized():
    days = {k: set(split_days(k)) for k in ("train", "val", "test")}
    assert not days["train"] & days["test"] and not days["train"] & days["val"] and not days["val"] & days["test"]
    total = (dt.date(YEAR_MAX, 12, 31) - dt.date(YEAR_MIN, 1, 1)).days + 1
    assert sum(len(v) for v in days.values()) == total
    assert len(days["test"]) >= 2000 and 0.08 < len(days["test"]) / total < 0.12


def test_corpus_deterministic_and_held_out():
    a = dates_corpus(n_train=3000, n_val=200, n_test=2000, seed=7)
    b = dates_corpus(n_train=3000, n_val=200, n_test=2000, seed=7)
    assert all(a[k] == b[k] for k in a), "same seed, different corpus"
    c = dates_corpus(n_train=3000, n_val=200, n_test=2000, seed=8)
    assert a["train"].src != c["train"].src
    test_iso = set(a["test"].tgt)
    assert len(test_iso) == 2000, "held-out dates are not distinct"
    assert not test_iso & set(a["train"].tgt) and not test_iso & set(a["val"].tgt) \
        and not set(a["val"].tgt) & set(a["train"].tgt), "a date appears in two splits"
    assert test_iso <= {d.isoformat() for d in split_days("test")}
    for split in a.values():
        for src, iso in zip(split.src[:300], split.tgt[:300]):
            assert dt.date.fromisoformat(iso).year in range(YEAR_MIN, YEAR_MAX + 1)
            assert any(render(dt.date.fromisoformat(iso), f) == src for f in FORMATS), f"{src!r} -> {iso}"
    used = {next(f for f in FORMATS if render(dt.date.fromisoformat(t), f) == s)
            for s, t in zip(a["train"].src, a["train"].tgt)}
    assert len(used) >= len(FORMATS) - 5, "formats are not drawn across the list"
    with pytest.raises(ValueError, match="n: the test split has 3697 distinct dates, asked for 5000"):
        date_pairs("test", 5000)
    with pytest.raises(ValueError, match="split: expected one of"):
        date_pairs("dev", 5)
