"""``mpiexec -n N rnnkit train charlm``: data-parallel training through the one Trainer and CLI.

The 1-rank runs go through ``rnnkit.cli.main`` in this process (no MPI); the N-rank runs launch the
venv's mpiexec on ``python -m rnnkit``.  In float64 (``--dtype float64``) N ranks x B/N streams
equal one rank x B: parameters, carried state and every logged loss to relative 1e-12 (the only
difference is the grouping of the gradient sum per rank).
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.io.distributed import _Rank  # rank and size only: another rank's shard, no collectives
from rnnkit.train import read_metrics

HERE = Path(__file__).resolve().parents[1]  # tests/
sys.path.insert(0, str(HERE))
import mpi_worker  # noqa: E402  (its launch helper)
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()
# 4 streams x 2 windows of 8: the carried state crosses windows and a resumed step
FLAGS = ["--hidden", "8", "--emb", "4", "--layers", "2", "--batch", "4", "--bptt", "8", "--eval-every", "3",
         "--log-every", "1", "--dtype", "float64", "--no-progress", "--lr", "0.01"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("corpus") / "t.txt"
    p.write_text(" ".join(rng.choice(WORDS, 140)), encoding="utf-8")
    return p


def _mpiexec(n, *args, timeout=120):
    run = mpi_worker.launch(n, "-m", "rnnkit", *args, timeout=timeout)
    assert run.returncode == 0, f"mpiexec -n {n} rnnkit {' '.join(map(str, args))}:\n{run.stderr[-3000:]}"
    return run


def _state(path):
    from rnnkit.io.checkpoint import load_checkpoint

    arrays, meta = load_checkpoint(path)
    return arrays, meta


def _losses(out):
    """step -> training loss, and step -> val loss, from metrics.jsonl."""
    train, val = {}, {}
    for line in (Path(out) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "loss" in r and "event" not in r:
            train[r["step"]] = r["loss"]
        if "val_loss" in r:
            val[r["step"]] = r["val_loss"]
    return train, val


def _same(got_dir, want_dir, what):
    got, gmeta = _state(Path(got_dir) / "last.safetensors")
    want, wmeta = _state(Path(want_dir) / "last.safetensors")
    assert gmeta["train"]["step"] == wmeta["train"]["step"], f"{what}: step"
    assert sorted(got) == sorted(want), f"{what}: tensors {sorted(set(got) ^ set(want))}"
    for k, w in want.items():
        if w.dtype.kind != "f":
            assert np.array_equal(got[k], w), f"{what}: {k!r} differs"
            continue
        rel = np.abs(got[k] - w).max() / max(np.abs(w).max(), 1e-300)
        assert rel <= 1e-12, f"{what}: {k!r} differs by {rel:.2e} (relative)"
    (gt, gv), (wt, wv) = _losses(got_dir), _losses(want_dir)
    # the first run of a resumed pair also evaluates at its last step (4)
    assert sorted(gt) == sorted(wt) and set(wv) <= set(gv), f"{what}: logged steps differ"
    np.testing.assert_allclose([gt[s] for s in sorted(gt)], [wt[s] for s in sorted(wt)], rtol=1e-12, atol=0,
                               err_msg=f"{what}: training loss curve")
    np.testing.assert_allclose([gv[s] for s in sorted(wv)], [wv[s] for s in sorted(wv)], rtol=1e-12, atol=0,
                               err_msg=f"{what}: val loss curve")


@pytest.mark.slow
def test_two_ranks_equal_one_rank_and_resume_with_any_rank_count(tmp_path, text):
    one, two, mixed = tmp_path / "one", tmp_path / "two", tmp_path / "mixed"
    assert main(["train", "charlm", "--text", str(text), *FLAGS, "--steps", "7", "--out", str(one)]) == 0
    # 2 ranks: 4 steps, then resumed under mpiexec to 7
    run = _mpiexec(2, "train", "charlm", "--text", text, *FLAGS, "--steps", "4", "--out", two)
    assert run.stdout.count("corpus:") == 1, f"rank 0 alone prints:\n{run.stdout}"
    _mpiexec(2, "train", "charlm", "--resume", two / "last.safetensors", "--text", text, "--steps", "7",
             "--no-progress")
    _same(two, one, "2 ranks (4 + 3 resumed steps) vs 1 rank (7 steps)")
    stop = [r for r in read_metrics(two / "metrics.jsonl") if r.get("event") == "stop"][-1]
    assert (stop["ranks"], stop["ranks_on_node"]) == (2, 2), f"ranks sharing this node: {stop}"
    assert stop["cores"] == 1, f"each rank's loops: --blas-threads 1 and half of this node's cores: {stop}"
    # a 1-rank checkpoint (whole carried state) resumed on 3 ranks (streams 2 + 1 + 1)
    assert main(["train", "charlm", "--text", str(text), *FLAGS, "--steps", "4", "--out", str(mixed)]) == 0
    _mpiexec(3, "train", "charlm", "--resume", mixed / "last.safetensors", "--text", text, "--steps", "7",
             "--no-progress")
    _same(mixed, one, "1 rank (4 steps) + 3 ranks (3 resumed steps) vs 1 rank (7 steps)")
    arrays, _ = _state(two / "last.safetensors")
    assert arrays["carry/h"].shape == (2, 4, 8), "the checkpoint holds every stream's carried state"
    first, last = _losses(one)[0][1], _losses(one)[0][7]
    assert last < first, f"the tiny model did not train ({first} -> {last})"


def test_a_task_without_shard_batch_gets_the_time_major_split_or_a_one_line_error():
    from collections import namedtuple

    from rnnkit.io.distributed import Communicator
    from rnnkit.errors import UserError
    from rnnkit.train.data_parallel import shard_batch

    class NoShard:
        kind = "seq2seq"

    Batch = namedtuple("Batch", "src lengths tgt mask")
    T, B = 5, 7
    batch = Batch(np.arange(T * B).reshape(T, B), np.arange(B), np.arange(3 * B * 2).reshape(3, B, 2),
                  {"w": np.ones(B), "scale": 2.0})
    assert shard_batch(NoShard(), batch, Communicator.single()) is batch
    parts = [shard_batch(NoShard(), batch, Communicator(_Rank(r, 2))) for r in range(2)]
    assert all(type(p) is Batch for p in parts) and parts[1].mask["scale"] == 2.0
    for name, axis in (("src", 1), ("lengths", 0), ("tgt", 1)):
        joined = np.concatenate([getattr(p, name) for p in parts], axis=axis)
        assert np.array_equal(joined, getattr(batch, name)), f"{name}: the shards do not tile the batch"
    assert [p.src.shape[1] for p in parts] == [4, 3]
    bad = (np.zeros((T, B)), np.zeros((B, 3)))  # (B, K) targets: items on axis 0, not the layout
    with pytest.raises(UserError, match=r"task 'seq2seq': cannot split its batch over 2 MPI ranks: the time-major "
                                        r"layout \(items on axis 1, of vectors axis 0\) gives batch\[0\] 7, "
                                        r"batch\[1\] 3; give the task a shard_batch"):
        shard_batch(NoShard(), bad, Communicator(_Rank(0, 2)))


@pytest.mark.parametrize("task", ["forecast", "adding", "copy"])
def test_every_task_shards_its_batch_into_the_whole(task):
    """The shards of every rank, put together, are the global batch (the other built-in tasks)."""
    from rnnkit.io.distributed import Communicator
    from rnnkit.tasks.forecast import Forecaster, ForecastConfig
    from rnnkit.tasks.longlag import AddingConfig, AddingTask, CopyConfig, CopyTask

    t = {"forecast": lambda: Forecaster(ForecastConfig(hidden=4, batch=7)),
         "adding": lambda: AddingTask(AddingConfig(T=12, hidden=4, batch=7)),
         "copy": lambda: CopyTask(CopyConfig(T=5, hidden=4, batch=7))}[task]()
    batch, _ = t.train_batch(np.random.default_rng(0), None)
    parts = [t.shard_batch(batch, Communicator(_Rank(r, 3))) for r in range(3)]
    for i, whole in enumerate(batch):
        axis = 0 if whole.ndim == 1 or (task == "forecast" and i == 1) or (task == "adding" and i > 0) else 1
        joined = np.concatenate([p[i] for p in parts], axis=axis)
        assert np.array_equal(joined, whole), f"{task}: field {i} of the batch is not the concatenation of its shards"
        assert [p[i].shape[axis] for p in parts] == [3, 2, 2], f"{task}: field {i} shard sizes"


def _rank_pid(marker, rank):
    """The pid of MPI rank ``rank`` of the job whose environment holds ``marker`` (our own processes only)."""
    for p in Path("/proc").iterdir():
        try:
            env = (p / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if marker.encode() in env and f"PMI_RANK={rank}".encode() in env and b"python" in (p / "cmdline").read_bytes():
            return int(p.name)
    return None


def _signal_rank_1(out, sig, *args):
    """Launch ``mpiexec -n 2 rnnkit train charlm ARGS`` (a long run), wait until it trains, send
    ``sig`` to rank 1 alone; returns (exit code, stdout, stderr)."""
    import time
    import uuid

    marker = f"RNNKIT_TEST_JOB={uuid.uuid4().hex}"
    log = out / "metrics.jsonl"
    size = log.stat().st_size if log.exists() else 0
    job = mpi_worker.launch(2, "-m", "rnnkit", "train", "charlm", *args, popen=True,
                            env_extra=dict([marker.split("=")]))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not log.exists() or log.stat().st_size <= size):
            time.sleep(0.2)
        time.sleep(0.5)
        pid = _rank_pid(marker, 1)
        assert pid is not None, "rank 1 not found"
        os.kill(pid, sig)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
    return job.returncode, stdout, stderr


@pytest.mark.slow
def test_under_mpiexec_a_signal_or_time_limit_stops_every_rank_and_a_killed_rank_keeps_the_checkpoint(tmp_path, text):
    import signal

    from rnnkit.tasks.charlm import CharLM
    from rnnkit.train import read_checkpoint

    if not Path("/proc/self/environ").exists():
        pytest.skip("finds the ranks' pids in /proc")
    out = tmp_path / "sig"
    code, stdout, stderr = _signal_rank_1(out, signal.SIGTERM, "--text", text, *FLAGS, "--steps", "1000000",
                                          "--eval-every", "0", "--out", out)  # only rank 1 receives SIGTERM
    assert code == 143, f"expected SIGTERM's exit code 143, got {code}:\n{stderr[-2000:]}"
    assert "interrupted: resume with" in stdout, stdout
    stop = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert stop["event"] == "stop" and stop["reason"] == "interrupted", stop
    assert _state(out / "last.safetensors")[1]["train"]["step"] == stop["step"] > 0, "rank 0 saved at the stop step"
    # resumed under mpiexec with a time limit: the ranks agree to stop and rank 0 saves there
    _mpiexec(2, "train", "charlm", "--resume", out / "last.safetensors", "--text", text, "--steps", "1000000",
             "--time-limit", "1", "--no-progress")
    stop2 = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert stop2["reason"] == "time limit" and stop2["step"] > stop["step"], stop2
    assert _state(out / "last.safetensors")[1]["train"]["step"] == stop2["step"]
    # rank 1 killed (SIGKILL, no clean-up): mpiexec ends the whole job (no hang) with a non-zero exit
    # code, and rank 0's last checkpoint (written every step here) is intact: it passes the full
    # validation of a checkpoint to resume from
    code, stdout, stderr = _signal_rank_1(out, signal.SIGKILL, "--resume", out / "last.safetensors", "--text", text,
                                          "--steps", "1000000", "--checkpoint-every", "1", "--no-progress")
    assert code != 0, f"exit {code}:\n{stdout[-1000:]}\n{stderr[-2000:]}"
    arrays, meta = read_checkpoint(out / "last.safetensors", CharLM, training=True)  # validated whole
    assert meta["train"]["step"] > stop2["step"], "the killed job's checkpoints"


@pytest.mark.slow
def test_classify_without_its_own_shard_batch_trains_on_two_ranks(tmp_path):
    """The classifier (padded ids (T, B), lengths (B,), labels (B,); no shard_batch) gets the time-major
    split: 2 ranks x 5 + 4 examples equal 1 rank x 9.  Float32 (the task has no dtype flag): the
    ranks' gradient sums are grouped differently, so they agree to rounding; measured 6e-7 on the
    parameters and 7e-8 on the losses after 8 Adam steps; a wrong split or weighting moves the loss
    by 1e-3 or more."""
    rng = np.random.default_rng(0)
    stems = {"vowels": "aeiou", "digits": "0123456789", "symbols": "+-*/=<>"}
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{k}\t{''.join(rng.choice(list(v), rng.integers(3, 9)))}\n"
                            for i in range(60) for k, v in [list(stems.items())[i % 3]]))
    flags = ["train", "classify", "--data", data, "--hidden", "8", "--emb", "6", "--batch", "9", "--layers", "2",
             "--lr", "0.01", "--steps", "8", "--eval-every", "4", "--log-every", "1", "--no-progress"]
    assert main([*map(str, flags), "--out", str(tmp_path / "one")]) == 0
    _mpiexec(2, *flags, "--out", tmp_path / "two")
    got, _ = _state(tmp_path / "two" / "last.safetensors")
    want, _ = _state(tmp_path / "one" / "last.safetensors")
    for k, w in want.items():
        if w.dtype.kind == "f":
            rel = np.abs(got[k] - w).max() / max(np.abs(w).max(), 1e-30)
            assert rel <= 1e-5, f"classify {k!r}: 2 ranks vs 1 differ by {rel:.2e} (relative)"
    (gt, gv), (wt, wv) = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert sorted(gt) == sorted(wt) == list(range(1, 9)) and sorted(gv) == sorted(wv) == [4, 8]
    np.testing.assert_allclose([gt[s] for s in wt], [wt[s] for s in wt], rtol=1e-6, err_msg="classify loss curve")
    np.testing.assert_allclose([gv[s] for s in wv], [wv[s] for s in wv], rtol=1e-6, err_msg="classify val loss")
