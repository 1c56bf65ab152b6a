"""A tiny data-parallel training run, for tests/io/test_distributed.py.

    mpiexec -n N python tests/mpi_worker.py OUT.safetensors STEPS [--die-at S | --raise-at S | --nan-at S]

Every rank builds LSTM(3, 5) + Linear(5, 2) in float64 from its *own* seed (rank 0's
weights are then broadcast), takes its shard of one fixed global batch of variable-length
sequences (masked mse, so the ranks' element counts differ), and trains STEPS Adam steps
with clipping after the Allreduce.  Rank 0 writes the parameters and the loss curve with
the project's checkpoint code after every step.  ``--die-at S``: rank 1 exits abruptly
(os._exit) at step S; ``--raise-at S``: rank 1 raises at step S (inside comm.guard());
``--nan-at S``: rank 1's loss is NaN at step S, and every rank must stop there (recorded as
``stopped_at`` in rank 0's checkpoint, with the Allreduce count).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from rnnkit import LSTM, Linear, Module, mse
from rnnkit.io.distributed import Communicator
from rnnkit.io.checkpoint import save_checkpoint
from rnnkit.nn.optim import Adam, clip_grad_norm

T, B, I, H, K = 6, 7, 3, 5, 2


class Net(Module):
    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.lstm = LSTM(I, H, dtype=np.float64, seed=rng)
        self.head = Linear(H, K, dtype=np.float64, seed=rng)


def global_batch():
    """x (T, B, I), y (T, B, K), mask (T, B, K): sequence b is valid for its first lengths[b] steps."""
    rng = np.random.default_rng(42)
    x = rng.standard_normal((T, B, I))
    y = rng.standard_normal((T, B, K))
    lengths = rng.integers(2, T + 1, B)
    mask = (np.arange(T)[:, None] < lengths[None, :])[:, :, None].repeat(K, axis=2)
    return x, y, mask


def train(comm: Communicator, steps: int, out: str | None = None, die_at: int = 0, raise_at: int = 0,
          nan_at: int = 0):
    """Train ``steps`` steps on this rank's shard; returns (params, losses) (the global mean losses)."""
    net = Net(seed=comm.rank)
    comm.broadcast_params(net.params)
    opt = Adam(net.params, net.grads, lr=0.05)
    x, y, mask = global_batch()
    part = comm.shard(B)
    x, y, mask = x[:, part], y[:, part], mask[:, part]
    losses = []
    for step in range(1, steps + 1):
        if comm.rank == 1 and step == die_at:
            os._exit(3)
        if comm.rank == 1 and step == raise_at:
            raise RuntimeError(f"injected failure at step {step}")
        net.zero_grad()
        h, (h_n, c_n) = net.lstm(x)
        pred = net.head(h)
        loss, dpred = mse(pred, y, mask)
        dh = net.head.backward(dpred)
        net.lstm.backward(dh)
        if comm.rank == 1 and step == nan_at:
            loss = float("nan")
        red = comm.allreduce_grads(net.grads, loss, count=mask.sum())
        meta = {"kind": "mpi-test", "losses": losses, "size": comm.size, "stopped_at": 0,
                "allreduce_calls": comm.stats.allreduce_calls}
        if red.stop:
            meta["stopped_at"] = step
            break
        clip_grad_norm(net.grads, 0.5)
        opt.step()
        losses.append(red.loss)
        if out and comm.is_root:
            save_checkpoint(out, net.params, meta)
    if not comm.in_sync(net.params):
        raise RuntimeError("parameters differ between ranks")
    state = {"h_n": comm.gather_shards(h_n, B, axis=1), "c_n": comm.gather_shards(c_n, B, axis=1)}
    if out and comm.is_root:  # the carried state of every stream, as a Trainer would checkpoint it
        save_checkpoint(out, {**net.params, **state}, meta)
    return {**net.params, **state}, losses


def launch(n: int, *argv, timeout=120, popen: bool = False, env_extra=None):
    """Run ``mpiexec -n n python ARGV...`` with the venv's mpiexec (next to sys.executable) and this
    checkout's src/ on PYTHONPATH; skips the calling test without mpi4py or mpiexec.  Returns the
    CompletedProcess (stdout/stderr captured), or with ``popen`` the running Popen."""
    import subprocess
    from pathlib import Path

    import pytest

    pytest.importorskip("mpi4py")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        pytest.skip(f"no mpiexec next to {sys.executable} (install the extra rnnkit[mpi])")
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent / "src"),
                                         env.get("PYTHONPATH", "")])
    cmd = [str(mpiexec), "-n", str(n), sys.executable, *map(str, argv)]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def main(argv):
    out, steps = argv[0], int(argv[1])
    flags = dict(zip(argv[2::2], map(int, argv[3::2])))
    comm = Communicator.from_environment()
    with comm.guard():
        train(comm, steps, out, die_at=flags.get("--die-at", 0), raise_at=flags.get("--raise-at", 0),
              nan_at=flags.get("--nan-at", 0))


if __name__ == "__main__":
    main(sys.argv[1:])
