"""Reading user files: bytes with friendly errors, and UTF-8 lines located by file and line.

Every problem is a ``UserError`` with a one-line message.  Line-oriented
readers report ``FILE:LINE: problem`` (1-based line numbers, the editor
convention), so a user can jump to the offending line:

    read_lines("src.txt")   ->  ["first line", "second line", ...]
    # bad byte:  "src.txt:7: not valid UTF-8 (byte 0xe9 at byte offset 212 of the file, byte 4 of the line)"

A file is split at ``\\n``; a ``\\r`` before it (Windows line ends) and a
UTF-8 byte-order mark at the start are removed; a final newline does not
start an extra (empty) line.
"""
from __future__ import annotations

import json
import os

from rnnkit.errors import UserError


def open_input(path, what: str = "input"):
    """The file opened for binary reading; UserError "<what>: ..." for a missing file, a directory,
    an OS error."""
    path = os.fspath(path)
    try:
        return open(path, "rb")  # noqa: SIM115 (the caller closes it)
    except FileNotFoundError:
        raise UserError(f"{what}: file not found: {path!r}") from None
    except IsADirectoryError:
        raise UserError(f"{what}: {path!r} is a directory, expected a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"{what}: cannot read {path!r} ({e.strerror})") from None


def read_bytes(path, what: str = "input") -> bytes:
    """The whole file as bytes; UserError "<what>: ..." for a missing file, a directory, an OS error."""
    with open_input(path, what) as f:
        try:
            return f.read()
        except OSError as e:
            raise UserError(f"{what}: cannot read {os.fspath(path)!r} ({e.strerror})") from None


def decode_utf8(data: bytes, path) -> str:
    """Decode UTF-8; a bad byte or a NUL raises UserError naming the file, the line and the byte offset."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if nul < 0 or e.start < nul:
            raise UserError(_located(path, data, e.start, f"not valid UTF-8 (byte 0x{data[e.start]:02x}")
                            + "); convert the file to UTF-8") from None
        text = ""
    if nul >= 0:
        raise UserError(_located(path, data, nul, "NUL byte (binary data?)") + "); expected UTF-8 text")
    return text[1:] if text.startswith("\ufeff") else text


def _located(path, data: bytes, offset: int, problem: str) -> str:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1)
    return f"{os.fspath(path)}:{line}: {problem} at byte offset {offset} of the file, byte {col} of the line"


def read_lines(path, what: str = "input") -> list[str]:
    """The lines of a UTF-8 text file, without line ends (see the module docstring).

    An empty file raises UserError; empty lines are returned as "" (the callers decide).
    """
    data = read_bytes(path, what)
    if not data:
        raise UserError(f"{what}: file {os.fspath(path)!r} is empty")
    lines = decode_utf8(data, path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [s[:-1] if s.endswith("\r") else s for s in lines]


def where(path, line: int) -> str:
    """``FILE:LINE`` (1-based line), the prefix of every located message."""
    return f"{os.fspath(path)}:{line}"


def json_object(line: str, at: str) -> dict:
    """One JSON-lines row -> its object; ``at`` (``FILE:LINE``) names it in the one-line error when the
    row is not valid JSON or not an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{at}: not valid JSON ({e.msg} at column {e.colno}); expected a JSON object per "
                        "line") from None
    if not isinstance(obj, dict):
        raise UserError(f"{at}: expected a JSON object per line, got a {type(obj).__name__}")
    return obj
