"""rnnkit.io.distributed: sharding, the single-process path, and real `mpiexec -n 2` runs.

The MPI runs launch the venv's mpiexec (next to sys.executable) on tests/mpi_worker.py and
compare with the same training in this process on one rank (float64, relative 1e-12).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnkit.io.distributed import Communicator, launched_size
from rnnkit.errors import UserError

HERE = Path(__file__).resolve().parents[1]  # tests/
WORKER = HERE / "mpi_worker.py"
sys.path.insert(0, str(HERE))
import mpi_worker  # noqa: E402


class FakeComm:
    """Rank/size only (for shard); any collective would fail loudly."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


@pytest.mark.parametrize("n, size", [(7, 2), (8, 2), (5, 5), (10, 3), (64, 4)])
def test_shard_covers_the_batch_once_balanced(n, size):
    parts = [Communicator(FakeComm(r, size)).shard(n) for r in range(size)]
    covered = np.concatenate([np.arange(n)[p] for p in parts])
    assert covered.tolist() == list(range(n)), f"shards {parts} do not tile 0..{n - 1}"
    lens = [p.stop - p.start for p in parts]
    assert max(lens) - min(lens) <= 1, f"shard lengths {lens} not balanced"


def test_shard_needs_an_item_per_rank():
    with pytest.raises(UserError, match=r"batch: expected at least one item per MPI rank \(4 ranks\), got 3"):
        Communicator(FakeComm(0, 4)).shard(3)


def test_launched_size_reads_the_launcher_variables():
    assert launched_size({}) == 1
    assert launched_size({"PMI_SIZE": "4", "PMI_RANK": "1"}) == 4
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    with pytest.raises(UserError, match="PMI_SIZE: expected a number of MPI ranks, got 'x'"):
        launched_size({"PMI_SIZE": "x"})


@pytest.mark.slow
def test_plain_run_is_single_and_never_imports_mpi4py():
    code = ("import sys; from rnnkit.io.distributed import Communicator as C; c = C.from_environment(); "
            "print(c.rank, c.size, c.is_root, 'mpi4py' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE",
                                                            "MPI_LOCALNRANKS")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["0", "1", "True", "False"], out.stderr


def test_missing_mpi4py_under_mpiexec_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    with pytest.raises(UserError, match=r"launched under MPI with 2 ranks, but mpi4py is not installed"):
        Communicator.from_environment({"PMI_SIZE": "2"})


def test_single_allreduce_leaves_gradients_alone():
    comm = Communicator.single()
    g = {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(2)}
    before = {k: v.copy() for k, v in g.items()}
    red = comm.allreduce_grads(g, 1.5, count=6)
    assert (red.loss, red.count, red.stop) == (1.5, 6.0, False)
    for k in g:
        assert np.array_equal(g[k], before[k]), f"grads[{k!r}] changed"
    assert comm.allreduce_grads(g, float("nan"), count=6).stop
    assert comm.agree(True) and not comm.agree(False)
    with pytest.raises(ValueError, match="count: expected the number of elements"):
        comm.allreduce_grads(g, 1.0, count=0)
    h = np.arange(12.0).reshape(1, 4, 3)
    assert np.array_equal(comm.gather_shards(h, 4, axis=1), h)
    with pytest.raises(ValueError, match=r"array: expected this rank's 5 of 5 items along axis 1, got shape"):
        comm.gather_shards(h, 5, axis=1)
    comm.broadcast_params(g)  # no-op
    assert comm.in_sync(g) and comm.stats.allreduce_calls == 0


def _mpiexec(n, *args, timeout=120):
    return mpi_worker.launch(n, WORKER, *args, timeout=timeout)


@pytest.mark.slow
def test_two_ranks_equal_one_rank(tmp_path):
    from rnnkit.io.checkpoint import load_checkpoint

    steps = 8
    out = tmp_path / "two.safetensors"
    run = _mpiexec(2, out, steps)
    assert run.returncode == 0, run.stderr[-2000:]
    got, meta = load_checkpoint(out)
    want, losses = mpi_worker.train(Communicator.single(), steps)
    assert (meta["size"], meta["allreduce_calls"]) == (2, steps), "expected one Allreduce per step"
    np.testing.assert_allclose(meta["losses"], losses, rtol=1e-12, atol=0, err_msg="loss curve, 2 ranks vs 1")
    for k, w in want.items():
        rel = np.abs(got[k] - w).max() / np.abs(w).max()
        assert rel <= 1e-12, f"{k!r} after {steps} steps: 2 ranks vs 1 differ by {rel:.2e} (relative)"
    assert {"h_n", "c_n"} <= set(got), "the gathered final states of all streams are missing"
    assert losses[-1] < losses[0], "the tiny model did not train"


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    from rnnkit.io.checkpoint import load_checkpoint

    out = tmp_path / "nan.safetensors"
    run = _mpiexec(2, out, 8, "--nan-at", 4, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    _, meta = load_checkpoint(out)
    assert (meta["stopped_at"], len(meta["losses"])) == (4, 3), "rank 0 (finite loss) did not stop with rank 1"


@pytest.mark.slow
def test_a_dying_rank_ends_the_job_and_keeps_the_checkpoint(tmp_path):
    from rnnkit.io.checkpoint import load_checkpoint

    out = tmp_path / "die.safetensors"
    run = _mpiexec(2, out, 8, "--die-at", 3, timeout=60)  # a hang would raise TimeoutExpired
    assert run.returncode != 0, "mpiexec exited 0 although rank 1 died"
    _, meta = load_checkpoint(out)
    # rank 0 may be killed while writing step 2's checkpoint: then step 1's is there, intact
    assert len(meta["losses"]) in (1, 2), f"expected the checkpoint of step 1 or 2, got {len(meta['losses'])} steps"


@pytest.mark.slow
def test_an_exception_on_one_rank_aborts_all(tmp_path):
    run = _mpiexec(2, tmp_path / "raise.safetensors", 8, "--raise-at", 3, timeout=60)
    assert run.returncode != 0
    assert ("rnnkit: error on MPI rank 1 of 2: RuntimeError: injected failure at step 3; aborting all ranks"
            in run.stderr), run.stderr[-2000:]
