"""A UTF-8 text file read in chunks, never held whole: its length in characters, and readers that
start at any character position (``rnnkit eval --text`` on a corpus of hundreds of MB).

``TextFile(path, alphabet=None)`` reads the file once, in chunks of ``chunk_bytes``: it checks what
:func:`rnnkit.data.text.load_text` checks (missing, empty, binary, not UTF-8; a leading BOM is
skipped) and, with ``alphabet``, that every character is in it -- all before any evaluation
starts -- counts the characters (``len``) and notes the byte offset of every chunk boundary.
``reader(pos)`` then returns a :class:`CharReader` positioned at character ``pos`` (a seek to the
nearest noted boundary and a short skip); its ``read(n)`` returns the next ``n`` characters.
Memory: a chunk per reader, whatever the file's size.
"""
from __future__ import annotations

import bisect
import codecs
import os

from rnnkit.errors import UserError
from rnnkit.data.lines import open_input

CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


class CharReader:
    """Characters of a UTF-8 file from a byte offset on (a character boundary): ``read(n)``."""

    def __init__(self, path: str, byte_offset: int, chunk_bytes: int = CHUNK_BYTES):
        self._f = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._f.seek(byte_offset)
        self._dec = codecs.getincrementaldecoder("utf-8")()
        self._buf, self._pos, self._chunk = "", 0, chunk_bytes

    def read(self, n: int) -> str:
        """The next ``n`` characters (fewer at the end of the file)."""
        while len(self._buf) - self._pos < n:
            data = self._f.read(self._chunk)
            more = self._dec.decode(data, final=not data)
            if not data and not more:
                break
            self._buf, self._pos = self._buf[self._pos:] + more, 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.read(min(n, self._chunk)))
            if not got:
                break
            n -= got

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "CharReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TextFile:
    """See the module docstring.  ``what`` starts error messages (default ``"--text"``)."""

    def __init__(self, path, alphabet: str | None = None, what: str = "--text", chunk_bytes: int = CHUNK_BYTES):
        self.path = os.fspath(path)
        self.chunk_bytes = chunk_bytes
        self._marks_chars: list[int] = []  # character position of each noted boundary
        self._marks_bytes: list[int] = []  # its byte offset
        self.length = self._scan(alphabet, what)

    def __len__(self) -> int:
        return self.length

    def _scan(self, alphabet, what) -> int:
        path, allowed = self.path, set(alphabet) if alphabet is not None else None
        f = open_input(path, what)
        dec = codecs.getincrementaldecoder("utf-8")()
        chars, offset, bad = 0, 0, set()
        with f:
            start = f.read(3)
            offset = 3 if start == _BOM else 0
            f.seek(offset)
            while True:
                pending = len(dec.getstate()[0])
                if not pending:  # a character boundary: note it
                    self._marks_chars.append(chars)
                    self._marks_bytes.append(offset)
                data = f.read(self.chunk_bytes)
                nul = data.find(b"\0")
                if nul >= 0:
                    raise UserError(f"{what}: file {path!r} looks binary (NUL byte at offset {offset + nul}); "
                                    f"expected UTF-8 text")
                try:
                    text = dec.decode(data, final=not data)
                except UnicodeDecodeError as e:
                    at = offset - pending + e.start
                    raise UserError(f"{what}: file {path!r} is not valid UTF-8 (byte at offset {at}); "
                                    f"convert it to UTF-8") from None
                if allowed is not None:
                    bad |= set(text) - allowed
                chars += len(text)
                offset += len(data)
                if not data:
                    break
        if chars == 0:
            raise UserError(f"{what}: file {path!r} is empty")
        if bad:
            shown = ", ".join(repr(c) for c in sorted(bad)[:10]) + (" ..." if len(bad) > 10 else "")
            raise UserError(f"{what}: {len(bad)} character(s) not in the model's vocabulary of {len(allowed)}: "
                            f"{shown}")
        return chars

    def reader(self, pos: int = 0) -> CharReader:
        """A :class:`CharReader` at character ``pos`` (0 <= pos <= len)."""
        if not 0 <= pos <= self.length:
            raise ValueError(f"pos: expected 0..{self.length}, got {pos}")
        k = bisect.bisect_right(self._marks_chars, pos) - 1
        r = CharReader(self.path, self._marks_bytes[k], self.chunk_bytes)
        r.skip(pos - self._marks_chars[k])
        return r
