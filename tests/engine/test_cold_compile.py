"""A cold compile of the time loops stays lean (issue 19: a cold ``rnnkit demo`` training within 15 s).

Two ways the loops once compiled twice as long as they need: numba's shape-mismatch message of an array slice
assignment (``raise_with_shape_context``, 1.3-2.1 s each time), and the per-step GEMM inlined at every call
site.  The check runs in a fresh process with an empty numba cache and reads numba's compile events."""
import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, sys
import numpy as np
from numba.core import event
rec = event.RecordingListener()
event.register("numba:compile", rec)
import rnnkit
x = np.random.default_rng(0).standard_normal((5, 16, 8)).astype(np.float32)
layer = rnnkit.LSTM(8, 32, seed=0)
out = layer.forward(x, lengths=np.array([5, 3] * 8))
layer.backward(np.ones_like(out[0] if isinstance(out, tuple) else out))
layer.forward(x, need_backward=False)
names = [ev.data["dispatcher"].py_func.__qualname__ for _, ev in rec.buffer if ev.is_start]
json.dump(names, sys.stdout)
"""


@pytest.mark.slow
def test_the_loops_compile_no_shape_error_message_and_the_gemm_once(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    names = json.loads(result.stdout.strip().splitlines()[-1])
    assert any("forward_loop" in n for n in names) and any("backward_loop" in n for n in names), names
    shape_errors = [n for n in names if "raise_with_shape_context" in n]
    assert not shape_errors, f"compiled functions: a slice assignment's shape error was compiled: {names}"
    assert names.count("times") == 1, f"step_gemm.times compiled {names.count('times')} times (once expected)"
