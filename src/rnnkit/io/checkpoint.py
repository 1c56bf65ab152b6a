"""Checkpoints: one safetensors file holding arrays + JSON metadata, written atomically.

File layout (plain safetensors, readable by any safetensors reader)::

    8 bytes   little-endian u64 N = header length
    N bytes   JSON header: tensor names, dtypes, shapes, offsets, and "__metadata__":
                  {"format": "rnnkit-checkpoint/1",
                   "meta":   <the caller's meta dict as JSON>,
                   "sha256": <digest of meta JSON + every tensor's name, dtype, shape, bytes>}
    rest      tensor bytes

No pickle anywhere.  ``save_checkpoint`` writes with
:func:`rnnkit.io.outputs.write_output` (never over a file of another kind; then
:func:`rnnkit.atomic.write_bytes_atomic`: temporary file in the same directory,
fsync, ``os.replace``), so a crash or a full disk mid-write leaves the previous
checkpoint intact.  ``load_checkpoint`` checks
the structure and the digest and raises :class:`CheckpointError` naming the
problem for a missing, truncated, corrupt or hand-edited file, or (with
``kind=``) a checkpoint of another model kind.  ``read_header`` reads only the
header (tensor names, dtypes, shapes and the metadata), for validation before
anything is loaded or built.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import NamedTuple

import numpy as np

from rnnkit.errors import CheckpointError
from rnnkit.io.outputs import write_output

FORMAT = "rnnkit-checkpoint/1"
_MAX_HEADER = 100 * 1024 * 1024


def _digest(meta_json: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8"))
        h.update(a.data if a.size else b"")
    return h.hexdigest()


def save_checkpoint(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-serialisable dict) to ``path`` atomically."""
    from safetensors.numpy import save

    path = os.fspath(path)
    if not isinstance(meta, dict):
        raise TypeError(f"meta: expected a dict, got {type(meta).__name__}")
    clean = {}
    for k, a in arrays.items():
        if not isinstance(k, str) or not isinstance(a, np.ndarray):
            raise TypeError(f"arrays: expected str -> numpy array, got {k!r} -> {type(a).__name__}")
        clean[k] = np.ascontiguousarray(a)
    try:
        meta_json = json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"meta: must be JSON-serialisable with finite numbers ({e})") from None
    header_meta = {"format": FORMAT, "meta": meta_json, "sha256": _digest(meta_json, clean)}
    data = save(clean, metadata=header_meta)
    write_output(path, data, "safetensors", what="checkpoint")  # atomic; never over a file of another kind


def _read(path: str, limit: int | None = None) -> tuple[bytes, int]:
    """(the first ``limit`` bytes, or all; the file size), with CheckpointErrors for unreadable paths."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if limit is None:
                return f.read(), size
            head = f.read(8)
            if len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                head += f.read(min(n, _MAX_HEADER))
            return head, size
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path!r}: file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint {path!r}: is a directory, expected a .safetensors file") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path!r}: cannot be read ({e.strerror})") from None


def _parse_header(data: bytes, size: int, bad: str) -> tuple[dict, dict]:
    """(safetensors header, our "__metadata__") from the file's first bytes."""
    if size < 8 or len(data) < 8:
        raise CheckpointError(f"{bad}: truncated or not a checkpoint (only {size} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > size or 8 + n > len(data):
        raise CheckpointError(f"{bad}: truncated or not a safetensors file (header claims {n} bytes, "
                              f"file has {size})")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{bad}: corrupt header (not valid JSON); not an rnnkit checkpoint") from None
    hmeta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(hmeta, dict) or hmeta.get("format") != FORMAT:
        raise CheckpointError(f"{bad}: not an rnnkit checkpoint (no {FORMAT!r} metadata)")
    return header, hmeta


def _parse_meta(meta_json: str, bad: str, kind: str | None) -> dict:
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError:
        raise CheckpointError(f"{bad}: corrupt metadata (not valid JSON)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{bad}: corrupt metadata (expected a JSON object)")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{bad}: holds a {meta.get('kind')!r} model, expected a {kind!r} checkpoint")
    return meta


class TensorInfo(NamedTuple):
    """A tensor as the header describes it (nothing read): numpy ``dtype`` and ``shape``."""

    dtype: np.dtype
    shape: tuple


_ST_DTYPES = {"F16": "float16", "BF16": None, "F32": "float32", "F64": "float64", "I8": "int8", "I16": "int16",
              "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
              "BOOL": "bool"}


def read_header(path, kind: str | None = None) -> tuple[dict[str, TensorInfo], dict]:
    """The tensors (name -> TensorInfo) and the meta dict of a checkpoint, reading only its header.

    For validating a checkpoint before anything is allocated (:mod:`rnnkit.io.checkpoint_checks`):
    cheap for any file size.  The digest is not verified here (that needs the data);
    :func:`load_checkpoint` does.  Raises CheckpointError as ``load_checkpoint`` does.
    """
    path = os.fspath(path)
    bad = f"checkpoint {path!r}"
    data, size = _read(path, limit=_MAX_HEADER)
    header, hmeta = _parse_header(data, size, bad)
    (n,) = struct.unpack("<Q", data[:8])
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            dt, shape, (lo, hi) = t["dtype"], tuple(int(s) for s in t["shape"]), t["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{bad}: corrupt header entry for tensor {name!r}") from None
        if _ST_DTYPES.get(dt) is None:
            raise CheckpointError(f"{bad}: tensor {name!r} has dtype {dt!r}, which rnnkit does not read")
        if any(s < 0 for s in shape) or not 0 <= lo <= hi or 8 + n + hi > size:
            raise CheckpointError(f"{bad}: truncated or corrupt tensor data (tensor {name!r} claims bytes "
                                  f"{lo}..{hi}, shape {shape}, file has {size - 8 - n} data bytes)")
        tensors[name] = TensorInfo(np.dtype(_ST_DTYPES[dt]), shape)
    return tensors, _parse_meta(hmeta.get("meta", ""), bad, kind)


def load_checkpoint(path, kind: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: returns ``(arrays, meta)``.

    With ``kind``, also checks ``meta["kind"] == kind``.  Raises CheckpointError otherwise.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = os.fspath(path)
    bad = f"checkpoint {path!r}"
    data, size = _read(path)
    header, hmeta = _parse_header(data, size, bad)
    try:
        arrays = load(data)
    except (SafetensorError, ValueError, TypeError) as e:
        raise CheckpointError(f"{bad}: truncated or corrupt tensor data ({e})") from None
    meta_json = hmeta.get("meta", "")
    if _digest(meta_json, arrays) != hmeta.get("sha256"):
        raise CheckpointError(f"{bad}: checksum mismatch; the file was modified after it was written "
                              f"(edited by hand or damaged)")
    return arrays, _parse_meta(meta_json, bad, kind)
