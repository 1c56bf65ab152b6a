"""Checkpoints: one safetensors file holding arrays + JSON metadata, written atomically.

File layout (plain safetensors, readable by any safetensors reader)::

    8 bytes   little-endian u64 N = header length
    N bytes   JSON header: tensor names, dtypes, shapes, offsets, and "__metadata__":
                  {"format": "rnnkit-checkpoint/1",
                   "meta":   <the caller's meta dict as JSON>,
                   "sha256": <digest of meta JSON + every tensor's name, dtype, shape, bytes>}
    rest      tensor bytes

No pickle anywhere.  ``save_checkpoint`` writes to a temporary file in the
same directory, fsyncs it and ``os.replace``-s it over the target, so a crash
mid-write leaves the previous checkpoint intact.  ``load_checkpoint`` checks
the structure and the digest and raises :class:`CheckpointError` naming the
problem for a missing, truncated, corrupt or hand-edited file, or (with
``kind=``) a checkpoint of another model kind.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

from ..errors import CheckpointError
from .atomic import write_bytes_atomic

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
    write_bytes_atomic(path, data)


def load_checkpoint(path, kind: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: returns ``(arrays, meta)``.

    With ``kind``, also checks ``meta["kind"] == kind``.  Raises CheckpointError otherwise.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path!r}: file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint {path!r}: is a directory, expected a .safetensors file") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path!r}: cannot be read ({e.strerror})") from None
    bad = f"checkpoint {path!r}"
    if len(data) < 8:
        raise CheckpointError(f"{bad}: truncated or not a checkpoint (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise CheckpointError(f"{bad}: truncated or not a safetensors file (header claims {n} bytes, "
                              f"file has {len(data)})")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{bad}: corrupt header (not valid JSON); not an rnnkit checkpoint") from None
    hmeta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(hmeta, dict) or hmeta.get("format") != FORMAT:
        raise CheckpointError(f"{bad}: not an rnnkit checkpoint (no {FORMAT!r} metadata)")
    try:
        arrays = load(data)
    except (SafetensorError, ValueError, TypeError) as e:
        raise CheckpointError(f"{bad}: truncated or corrupt tensor data ({e})") from None
    meta_json = hmeta.get("meta", "")
    if _digest(meta_json, arrays) != hmeta.get("sha256"):
        raise CheckpointError(f"{bad}: checksum mismatch; the file was modified after it was written "
                              f"(edited by hand or damaged)")
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError:
        raise CheckpointError(f"{bad}: corrupt metadata (not valid JSON)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{bad}: corrupt metadata (expected a JSON object)")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{bad}: holds a {meta.get('kind')!r} model, expected a {kind!r} checkpoint")
    return arrays, meta
