"""Speech manifests: which audio file says what.

Two formats, chosen by the first non-blank character of the file (``{``: JSON lines):

* TSV: ``path<TAB>transcript`` per line (extra columns ignored);
* NeMo-style JSON lines: ``{"audio_filepath": ..., "text": ..., "duration": ...}`` (duration optional).

Relative audio paths resolve against the manifest's folder.  Blank lines are skipped; a bad row
raises a UserError naming ``file:line``, what was expected and what was found.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from rnnkit.data.lines import json_object
from rnnkit.errors import UserError


@dataclass(frozen=True)
class Utterance:
    audio: str  # absolute path
    text: str  # the transcript as written
    where: str  # "manifest:line", for messages


def read_manifest(path) -> list[Utterance]:
    """The utterances of a TSV or JSON-lines manifest (see the module docstring)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the manifest ({e})") from None
    folder = os.path.dirname(os.path.abspath(path))
    first = next((ln.lstrip() for ln in lines if ln.strip()), "")
    parse = _json_row if first.startswith("{") else _tsv_row
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        audio, text = parse(line, where)
        out.append(Utterance(os.path.normpath(os.path.join(folder, audio)), text, where))
    if not out:
        raise UserError(f"{path}: the manifest holds no utterance")
    return out


def _tsv_row(line: str, where: str) -> tuple[str, str]:
    cols = line.split("\t")
    if len(cols) < 2 or not cols[0].strip():
        raise UserError(f"{where}: expected 'path<TAB>transcript', got {line[:60]!r}")
    return cols[0].strip(), cols[1]


def _json_row(line: str, where: str) -> tuple[str, str]:
    row = json_object(line, where)
    audio, text = row.get("audio_filepath"), row.get("text")
    if not isinstance(audio, str) or not audio.strip():
        raise UserError(f"{where}: expected a string 'audio_filepath', got {audio!r}")
    if not isinstance(text, str):
        raise UserError(f"{where}: expected a string 'text', got {text!r}")
    return audio.strip(), text
