"""Flags generated from a config dataclass: one ``--field-name`` per field declared with
:func:`rnnkit.checks.fields.option` (its help, rule, choices, group and metavar), so a task spec
lists no flag of its config by hand.

    rule      -> the argparse type of :mod:`rnnkit.cli.args` checking the same rule
    choices   -> ``choices=``
    bool      -> a switch (default False: ``--name``; default True: ``--name/--no-name``), or with
                 metavar "0|1" a value 0 or 1
    no rule   -> by the default: an int a positive integer, a float a number, else a str; a field
                 declared without option() (a plain default) gets "(default X)" as its help

Every flag's default is None (= not given: a new run takes the config's default, ``--resume`` the
checkpoint's value).  The cell-variant fields (rnnkit.engine.layer_types.CellVariant) follow ``--cell``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os

from rnnkit.checks.fields import help_text, meta_of
from rnnkit.checks.rules import NONNEG_INT, NONNEG_NUMBER, POSITIVE_INT, POSITIVE_NUMBER, RATE, SPEEDS
from rnnkit.engine.dropout import CONFIG_RATES
from rnnkit.engine.layer_types import CELL_OPTIONS
from rnnkit.cli.args import nonneg_float, nonneg_int, positive_float, positive_int, rate, speeds, zero_one

RULE_TYPES = {POSITIVE_INT: positive_int, NONNEG_INT: nonneg_int, POSITIVE_NUMBER: positive_float,
              NONNEG_NUMBER: nonneg_float, RATE: rate, SPEEDS: speeds}


def flag_fields(config_class) -> list:
    """(field, group) of every field of ``config_class`` with a flag, in the order of ``--help``: the
    cell-variant fields follow ``cell``, in its group; the dropout rates (ConfigRates) come last."""
    fields = [f for f in dataclasses.fields(config_class) if meta_of(config_class, f).get("flag", f.name != "seed")]
    fields = [f for f in fields if f.name not in CONFIG_RATES] + [f for f in fields if f.name in CONFIG_RATES]
    variants = [f for f in fields if f.name in CELL_OPTIONS]
    out = []
    for f in fields:
        if f.name not in CELL_OPTIONS:
            group = meta_of(config_class, f).get("group")
            out += [(f, group)] + ([(v, group) for v in variants] if f.name == "cell" else [])
    return out


def add_field_flag(p, f: dataclasses.Field, config_class) -> None:
    """``--field-name`` of one field of ``config_class`` (see the module docstring)."""
    m = meta_of(config_class, f)
    kw = {"help": help_text(f, m)}
    if m.get("metavar"):
        kw["metavar"] = m["metavar"]
    if f.type in (bool, "bool") and m.get("metavar") != "0|1":
        kw.update(action=argparse.BooleanOptionalAction, default=None) if f.default else \
            kw.update(action="store_const", const=True)
    elif m.get("choices") is not None:
        kw["choices"] = m["choices"]
    else:
        kw["type"] = zero_one if m.get("metavar") == "0|1" else \
            RULE_TYPES.get(m.get("rule")) or {int: positive_int, float: float}.get(type(f.default), str)
    p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, **kw)


def add_config_flags(p, config_class, groups=()) -> None:
    """A flag per field of ``config_class``: those without a group on ``p``, then one argument group
    per name of ``groups`` (in that order: the order of ``--help`` and of the usage line)."""
    fields = flag_fields(config_class)
    named = [g for g in dict.fromkeys(g for _, g in fields) if g and g not in groups]
    for name in (None, *groups, *named):
        target = p if name is None else p.add_argument_group(name)
        for f, group in fields:
            if group == name:
                add_field_flag(target, f, config_class)


def given_fields(args, config_class) -> dict:
    """The fields of ``config_class`` whose flags were given (a ``path`` field made absolute)."""
    out = {}
    for f in dataclasses.fields(config_class):
        v = getattr(args, f.name, None)
        if v is not None:
            out[f.name] = os.path.abspath(v) if meta_of(config_class, f).get("path") else v
    return out
