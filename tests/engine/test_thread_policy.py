"""The thread policy's one setting (rnnkit.engine.threads.use_cores) and every floor that sets it:
a layer, the trainer (--blas-threads), an MPI rank sharing its node, a Ray trial, run_grid."""
from __future__ import annotations

import types

import numpy as np
import pytest

import rnnkit
from rnnkit import threads
from rnnkit.io.distributed import Communicator
from rnnkit.sweep.grid import run_grid
from rnnkit.sweep.spec import parse_spec
from rnnkit.sweep.tune import _trial_fn


def test_use_cores_sets_lowers_and_restores():
    machine = threads.available_cores()
    assert threads.usable_cores() == machine
    with threads.use_cores(3):
        assert threads.usable_cores() == 3
        with threads.use_cores(5):  # a nested setting never raises an outer one
            assert threads.usable_cores() == 3
        with threads.use_cores(1):
            assert threads.usable_cores() == 1
        assert threads.usable_cores() == 3
    assert threads.usable_cores() == machine
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="cores: expected an integer >= 1"):
            with threads.use_cores(bad):
                pass


def test_one_core_plans_no_threads_and_one_blas_thread():
    for B, H, G, D in ((32, 128, 512, 1), (128, 512, 2048, 2), (1, 32, 128, 1)):
        assert threads.plan(B, H, G, D, 4, 1) == threads.ThreadPlan(((0, B),), False, 1), (B, H, G, D)


def test_a_layer_follows_the_runs_setting_and_its_own():
    layer = rnnkit.LSTM(64, 128, seed=0)
    assert layer.cores is None
    two = threads.plan(32, 128, 512, 1, 4, 2)
    assert len(two.shards) == 2 and two.parallel  # what 2 cores give at this shape
    layer.cores = 2  # its own setting: 2 cores, whatever the machine has
    assert layer.thread_plan(32) == two
    with threads.use_cores(1):  # the run's setting wins over the layer's
        assert layer.thread_plan(32) == threads.ThreadPlan(((0, 32),), False, 1)
    layer.cores = None
    with threads.use_cores(2):
        assert layer.thread_plan(32) == two
    with threads.use_cores(1):  # and the layer computes the same on one thread
        x = np.random.default_rng(0).standard_normal((5, 32, 64)).astype(np.float32)
        out1, _ = layer.forward(x)
    layer.cores = 2
    out2, _ = layer.forward(x)
    np.testing.assert_allclose(out1, out2, rtol=0, atol=1e-6, err_msg="out: 1 core vs 2 cores")


@pytest.mark.parametrize("cores,ranks,expect", [(2, 1, 2), (2, 2, 1), (2, 3, 1), (16, 4, 4), (16, 3, 5), (1, 8, 1)])
def test_ranks_sharing_a_node_share_its_cores(cores, ranks, expect):
    assert threads.shared_cores(cores, ranks) == expect


class NodeComm:
    """COMM_WORLD stand-in: rank/size and the node split (``on_node`` ranks share this node)."""

    def __init__(self, rank, size, on_node):
        self.rank, self.size, self.on_node, self.splits = rank, size, on_node, []

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Split_type(self, kind):
        self.splits.append(kind)
        return types.SimpleNamespace(Get_size=lambda: self.on_node, Free=lambda: None)


def test_an_mpi_rank_gets_its_share_of_the_node(monkeypatch):
    monkeypatch.setattr(Communicator, "_mpi", lambda self: types.SimpleNamespace(COMM_TYPE_SHARED="shared"))
    comm = Communicator(NodeComm(1, 4, on_node=2))
    assert comm.ranks_on_node() == 2 and comm.ranks_on_node() == 2
    assert comm._comm.splits == ["shared"], "the node split is one collective, asked once"
    assert comm.cores() == threads.shared_cores(threads.available_cores(), 2)
    assert Communicator.single().ranks_on_node() == 1
    assert Communicator.single().cores() == threads.available_cores()


def test_run_grid_gives_each_cell_its_cores():
    with threads.use_cores(4):  # an outer setting is lowered to the cell's 1 (or 2), never raised
        assert run_grid([0, 1], lambda c: threads.usable_cores()) == [1, 1]
        assert run_grid([0], lambda c: threads.usable_cores(), blas_threads=2) == [2]


@pytest.mark.slow
def test_a_ray_trial_runs_on_the_specs_cores():
    pytest.importorskip("ray.tune")
    seen = []
    _trial_fn(lambda config, report: seen.append((config["x"], threads.usable_cores())))({"x": 7})
    _trial_fn(lambda config, report: seen.append((config["x"], threads.usable_cores())), 2)({"x": 8})
    assert seen == [(7, 1), (8, 2)]
    base = {"task": "charlm", "num_trials": 1, "metric": "val_loss"}
    assert parse_spec(base).cpus_per_trial == 1
    assert parse_spec({**base, "cpus_per_trial": 2}).cpus_per_trial == 2
    with pytest.raises(rnnkit.errors.UserError, match="f.toml: cpus_per_trial: expected an integer >= 1, got 0"):
        parse_spec({**base, "cpus_per_trial": 0}, source="f.toml")
