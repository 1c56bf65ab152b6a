"""Checkpoint files: round trip, atomic writes, and clear errors for damaged files."""
import json
import os
import struct

import numpy as np
import pytest

from rnnkit.errors import CheckpointError
from rnnkit.io import checkpoint as ck
from rnnkit.io.checkpoint import load_checkpoint, save_checkpoint


def _sample():
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((3, 4)).astype(np.float32), "i": np.arange(5, dtype=np.int64),
              "d": rng.standard_normal(2)}
    meta = {"kind": "charlm", "step": 7, "vocab": "ab\n\u00e9", "rng": {"state": {"state": 2**100 + 3}}}
    return arrays, meta


def test_round_trip(tmp_path):
    arrays, meta = _sample()
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, arrays, meta)
    a2, m2 = load_checkpoint(p, kind="charlm")
    assert m2 == meta
    assert set(a2) == set(arrays)
    for k in arrays:
        assert a2[k].dtype == arrays[k].dtype and np.array_equal(a2[k], arrays[k])
    # a plain safetensors reader can read it too
    from safetensors.numpy import load_file
    assert np.array_equal(load_file(str(p))["w"], arrays["w"])
    assert [f for f in os.listdir(tmp_path)] == ["m.safetensors"]  # no temp files left


def test_missing_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_truncated(tmp_path):
    arrays, meta = _sample()
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, arrays, meta)
    data = p.read_bytes()
    for cut in (0, 5, 40, len(data) - 3):
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_checkpoint(p)


def test_garbage(tmp_path):
    p = tmp_path / "g.safetensors"
    p.write_bytes(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 20)
    with pytest.raises(CheckpointError, match="corrupt header"):
        load_checkpoint(p)
    p.write_bytes(os.urandom(64))
    with pytest.raises(CheckpointError, match="truncated|corrupt|not"):
        load_checkpoint(p)


def test_plain_safetensors_without_our_metadata(tmp_path):
    from safetensors.numpy import save_file
    p = tmp_path / "x.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(p))
    with pytest.raises(CheckpointError, match="not an rnnkit checkpoint"):
        load_checkpoint(p)


def _edit_header(path, fn):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    fn(header)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + data[8 + n:])


def test_hand_edited_metadata_or_data(tmp_path):
    arrays, meta = _sample()
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, arrays, meta)

    def bump(h):
        m = json.loads(h["__metadata__"]["meta"])
        m["step"] = 8
        h["__metadata__"]["meta"] = json.dumps(m)
    _edit_header(p, bump)
    with pytest.raises(CheckpointError, match="checksum mismatch.*edited by hand"):
        load_checkpoint(p)
    save_checkpoint(p, arrays, meta)
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last tensor's bytes
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(p)


def test_wrong_kind(tmp_path):
    arrays, meta = _sample()
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, arrays, meta)
    with pytest.raises(CheckpointError, match="holds a 'charlm' model, expected a 'forecast' checkpoint"):
        load_checkpoint(p, kind="forecast")


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    arrays, meta = _sample()
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, arrays, meta)
    before = p.read_bytes()

    def boom(src, dst):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(p, {"w": np.ones(3)}, {"kind": "charlm", "step": 99})
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]
    assert load_checkpoint(p)[1]["step"] == 7


def test_unserialisable_meta(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", {}, {"x": float("nan")})
    assert not (tmp_path / "x.safetensors").exists()
