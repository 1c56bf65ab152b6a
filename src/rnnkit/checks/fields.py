"""Config fields that carry their own check and their command-line flag.

A task config (a frozen dataclass) declares each field once::

    hidden: int = option(64, "hidden size per direction", rule=POSITIVE_INT, group="model")

:func:`option` is ``dataclasses.field(default=..., metadata={...})``; the metadata says

    help     the flag's help; " (default X)" is added unless its last parenthesis names the
             default already ("{default}" there is the default) or the default is None or False
    rule     a :class:`rnnkit.checks.rules.Rule` the value satisfies (also the flag's type)
    choices  the allowed values (also the flag's choices)
    group    the ``--help`` section the flag is listed in ("corpus", "tokens", "model"; None: options)
    metavar  the flag's metavar ("FILE", "P"); a bool field with metavar "0|1" takes 0 or 1
    path     a file path: the command line records it absolute
    flag     False: no flag of its own (``seed``: the training flag ``--seed`` sets it)

A bool field without metavar is a switch (default False: ``--name``; default True:
``--name/--no-name``).  :func:`check_options` applies every rule and choice of a config (its
``__post_init__`` calls it); ``rnnkit.cli.options`` builds the flags from the same metadata, so a
flag and its field cannot disagree.
"""
from __future__ import annotations

import dataclasses

from rnnkit.checks.rules import Rule, check, check_choice


def option(default, help: str = "", *, rule: Rule | None = None, choices=None, group: str | None = None,
           metavar: str | None = None, path: bool = False, flag: bool = True):
    """A dataclass field with its check and its flag (see the module docstring)."""
    meta = {"help": help, "rule": rule, "choices": None if choices is None else tuple(choices), "group": group,
            "metavar": metavar, "path": path, "flag": flag}
    return dataclasses.field(default=default, metadata=meta)


def meta_of(cls, f: dataclasses.Field) -> dict:
    """The option metadata of field ``f`` of dataclass ``cls``: its own, or (a subclass that gives a
    field a new plain default keeps its check and flag) that of the nearest base class declaring it."""
    for klass in cls.__mro__:
        base = getattr(klass, "__dataclass_fields__", {}).get(f.name)
        if base is not None and base.metadata:
            return base.metadata
    return f.metadata


def check_options(config) -> None:
    """Check every field of ``config`` declared with a rule or choices (ValueError naming the field)."""
    for f in dataclasses.fields(config):
        value, m = getattr(config, f.name), meta_of(type(config), f)
        if m.get("rule") is not None:
            check(f.name, value, m["rule"])
        if m.get("choices") is not None:
            check_choice(f.name, value, m["choices"])


def help_text(f: dataclasses.Field, meta: dict | None = None) -> str:
    """The flag help of field ``f`` (``meta``: its metadata, default ``f.metadata``): its help, with
    " (default X)" unless it names one (see the module docstring)."""
    text = (f.metadata if meta is None else meta).get("help", "").replace("{default}", str(f.default))
    if (text.endswith(")") and "default" in text[text.rfind("("):]) or f.default is None or f.default is False:
        return text
    return f"{text} (default {f.default})".strip()
