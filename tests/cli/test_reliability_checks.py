"""Reliability checks before anything is built or saved: the non-finite guard, the memory
estimate and check, and checkpoint metadata validation.  Torch-free; see docs/reliability.md."""
import math
import tracemalloc

import numpy as np
import pytest

from rnnkit.checks.arrays import check_all_finite, first_nonfinite
from rnnkit.errors import CheckpointError, InsufficientMemory, NonFiniteError, TrainingDiverged
from rnnkit.io.checkpoint import TensorInfo, load_checkpoint, read_header, save_checkpoint
from rnnkit.engine.memory import check_memory, estimate_rnn_bytes, physical_memory, rnn_param_shapes
from rnnkit.io.checkpoint_checks import validate_checkpoint
from rnnkit.engine.layer_types import LAYERS
from rnnkit.nn.optim import Adam


def _one_line(e) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


# ---------------------------------------------------------------- non-finite guard
def test_check_all_finite_names_first_offender():
    good = {"loss": 1.5, "w": np.ones((2, 3), np.float32), "ids": np.arange(3), "n": 7}
    check_all_finite(good, "step 3")
    assert first_nonfinite(good) is None
    w = np.zeros((3, 4))
    w[2, 1] = np.inf
    big = np.zeros(10000, np.float32)  # past the compiled check's size: NumPy's path
    big[9999] = np.nan
    with pytest.raises(NonFiniteError) as e:
        check_all_finite({"loss": 0.3, "grads.a": np.zeros(2), "params.w": w, "params.b": big},
                         "step 12: after the update")
    msg = _one_line(e)
    assert msg == "step 12: after the update: 'params.w' is not finite (inf at index (2, 1))", msg
    assert e.value.tensor == "params.w" and e.value.index == (2, 1) and isinstance(e.value, TrainingDiverged)
    with pytest.raises(NonFiniteError, match=r"'loss' is not finite \(nan\)"):
        check_all_finite({"loss": float("nan"), "params.w": w})
    assert first_nonfinite({"b": big})[:2] == ("b", (9999,))
    assert first_nonfinite({"s": np.float32("-inf")}) == ("s", (), -math.inf)


# ---------------------------------------------------------------- memory
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, True), (3, False)])
def test_rnn_param_shapes_match_the_layers(cell, layers, bidir):
    m = LAYERS[cell](5, 7, num_layers=layers, bidirectional=bidir, seed=0)
    want = {k: v.shape for k, v in m.params.items()}
    assert rnn_param_shapes(5, 7, layers, 2 if bidir else 1, cell) == want
    m = LAYERS[cell](5, 7, num_layers=layers, bidirectional=bidir, bias=False, seed=0)
    assert rnn_param_shapes(5, 7, layers, 2 if bidir else 1, cell, bias=False, prefix="r.") == \
        {"r." + k: v.shape for k, v in m.params.items()}


def _train_twice(cell, I, H, L, D, T, B, dtype):
    m = LAYERS[cell](I, H, num_layers=L, bidirectional=D == 2, dtype=dtype, seed=0)
    opt = Adam(m.params, m.grads)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    for _ in range(2):
        out, _ = m.forward(x)
        m.backward(np.ones_like(out))
        opt.step()
    return m, opt, x


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("I,H,L,D,T,B,dtype", [(8, 64, 2, 1, 100, 16, np.float32),
                                               (16, 128, 1, 2, 20, 4, np.float64),
                                               (32, 256, 1, 1, 3, 2, np.float32)])
def test_estimate_tracks_the_real_allocation(cell, I, H, L, D, T, B, dtype):
    """The estimate is within 0.8x..1.2x of what tracemalloc sees for layer + Adam + fwd/bwd."""
    _train_twice(cell, I, H, L, D, T, B, dtype)  # compile and warm up first: measure the model only
    tracemalloc.start()
    try:
        keep = _train_twice(cell, I, H, L, D, T, B, dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    est = estimate_rnn_bytes(I, H, L, T, B, D, cell, np.dtype(dtype).itemsize, optimizer_slots=2)
    assert 0.8 <= est.total / peak <= 1.2, f"{cell}: estimate {est.total} B vs traced peak {peak} B ({est.describe()})"
    del keep


def test_estimate_of_the_issue_cases():
    # `--layers 1 --hidden 100000` (LSTM, emb 64): 4e10 weights; the float64 init draw alone is 298 GiB
    e = estimate_rnn_bytes(64, 100000, 1, T=100, B=32, cell="lstm")
    assert e.init == 4 * 100000 * (64 + 100000 + 2) * 8 and e.init / 2**30 > 298
    assert e.params == e.grads == 4 * 100000 * (64 + 100000 + 2) * 4 and e.optimizer == 2 * e.params
    with pytest.raises(InsufficientMemory) as err:
        check_memory(e.total, "--hidden 100000: the model", available=64 * 2**30)
    msg = _one_line(err)
    assert msg.startswith("--hidden 100000: the model needs about ") and "64.0 GiB of physical memory" in msg
    assert err.value.needed == e.total and "GiB" in msg
    with pytest.raises(InsufficientMemory):  # no machine has 16 TB of RAM
        check_memory(estimate_rnn_bytes(64, 10**6, 1).total, "--hidden 1000000")
    assert check_memory(estimate_rnn_bytes(64, 128, 2, T=100, B=32).total, "small") > 0
    assert physical_memory() > 2**28
    with pytest.raises(ValueError, match="hidden: expected a positive integer, got -3"):
        estimate_rnn_bytes(8, -3)


# ---------------------------------------------------------------- checkpoint validation
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real 2-step charlm training checkpoint (Trainer layout: task/, optim/, carry/)."""
    from rnnkit.tasks.charlm import CharLM, CharLMConfig
    from rnnkit.train import TrainConfig, Trainer

    lm = CharLM(CharLMConfig(cell="lstm", layers=1, hidden=8, emb=4, batch=2, bptt=5), text="abcab cab" * 30)
    tr = Trainer(lm, TrainConfig(steps=2, eval_every=0, log_every=0, progress=False))
    tr.fit()
    p = tmp_path_factory.mktemp("ck") / "last.safetensors"
    tr.save(p)
    return p


def _expected(meta):
    """What the charlm of this metadata will allocate, from the metadata alone (as a task would)."""
    c, V = meta["task"]["config"], len(meta["task"]["vocab"])
    shapes = {"emb.weight": (V, c["emb"]), "head.weight": (V, c["hidden"]), "head.bias": (V,)}
    shapes.update(rnn_param_shapes(c["emb"], c["hidden"], c["layers"], 1, c["cell"], prefix="rnn."))
    return shapes


def _validate(tensors, meta, path="ck", **kw):
    c = meta["task"]["config"]
    return validate_checkpoint(tensors, meta, lambda: _expected(meta), np.float32, path=str(path),
                               optimizer_slots=("m", "v"),
                               sizes={k: c[k] for k in ("hidden", "layers", "emb")}, **kw)


def test_valid_checkpoint_header_and_arrays(trained):
    from rnnkit.tasks.charlm import CharLM
    tensors, meta = read_header(trained, kind="charlm")
    arrays, meta2 = load_checkpoint(trained)
    assert meta == meta2 and {k: (v.dtype, v.shape) for k, v in arrays.items()} == \
        {k: (v.dtype, v.shape) for k, v in tensors.items()}
    lm = CharLM.from_checkpoint({k[5:]: v for k, v in arrays.items() if k.startswith("task/")}, meta["task"])
    assert _expected(meta) == {k: v.shape for k, v in lm.model.params.items()}, "expected shapes differ from the model"
    assert CharLM.model_plan(meta["task"]).shapes == _expected(meta), "CharLM.model_plan differs from the model"
    for t in (tensors, arrays):
        plan = _validate(t, meta, trained)
        assert plan.step == 2 and plan.load_optimizer and plan.nbytes > 0
    assert validate_checkpoint(tensors, meta, _expected(meta), np.float32, training=False).step is None


def _resave(trained, tmp_path, edit_arrays=None, edit_meta=None):
    arrays, meta = load_checkpoint(trained)
    if edit_arrays:
        edit_arrays(arrays)
    if edit_meta:
        edit_meta(meta)
    p = tmp_path / "edited.safetensors"
    save_checkpoint(p, arrays, meta)  # a valid digest: only the validation can catch these
    return read_header(p), load_checkpoint(p), p


@pytest.mark.parametrize("case,match", [
    ("float64", r"tensor 'task/rnn.weight_hh_l0' is float64, the model is float32"),
    ("step", r"training step = -5, expected an integer >= 0"),
    ("hidden", r"tensor 'task/head.weight' has shape \(\d+, 8\), the model its metadata describes has \(\d+, 100000\)"),
    ("hidden0", r"metadata 'hidden' = 0, expected a positive integer"),
    ("nocell", r"bad model metadata \(KeyError: 'cell'\)"),
    ("nan", r"tensor 'task/rnn.bias_hh_l0' is not finite \(nan at index \(3,\)\); the file holds a diverged model"),
    ("missing", r"missing \['task/head.bias'\]"),
])
def test_bad_checkpoints_one_line_before_building(trained, tmp_path, case, match):
    def arrays_edit(a):
        if case == "float64":
            a["task/rnn.weight_hh_l0"] = a["task/rnn.weight_hh_l0"].astype(np.float64)
        elif case == "nan":
            a["task/rnn.bias_hh_l0"][3] = np.nan
        elif case == "missing":
            del a["task/head.bias"]

    def meta_edit(m):
        if case == "step":
            m["train"]["step"] = -5
        elif case == "hidden":
            m["task"]["config"]["hidden"] = 100000
        elif case == "hidden0":
            m["task"]["config"]["hidden"] = 0
        elif case == "nocell":
            del m["task"]["config"]["cell"]
    (tensors, meta), (arrays, _), p = _resave(trained, tmp_path, arrays_edit, meta_edit)
    sources = [arrays] if case == "nan" else [tensors, arrays]  # NaN needs the data, the rest only the header
    for t in sources:
        with pytest.raises(CheckpointError, match=match) as e:
            _validate(t, meta, p)
        assert _one_line(e).startswith(f"checkpoint {str(p)!r}: ")


def test_optimizer_state_missing_or_mismatched_refuses_unless_reset(trained, tmp_path):
    def drop_moments(a):
        for k in [k for k in a if k.startswith("optim/v/")]:
            del a[k]

    def drop_meta(m):
        del m["train"]["optim"]

    def bad_shape(a):
        a["optim/m/head.bias"] = np.zeros(3, np.float32)
    cases = [(drop_moments, None, r"optimizer state missing: \d+ of \d+ tensors \(first 'optim/v/"),
             (None, drop_meta, "no optimizer state in the metadata"),
             (bad_shape, None, r"optimizer tensor 'optim/m/head.bias' has shape \(3,\)")]
    for ea, em, match in cases:
        (tensors, meta), _, p = _resave(trained, tmp_path, ea, em)
        with pytest.raises(CheckpointError, match=match) as e:
            _validate(tensors, meta, p)
        assert "pass --reset-optimizer" in _one_line(e)
        plan = _validate(tensors, meta, p, reset_optimizer=True)
        assert not plan.load_optimizer and plan.step == 2 and "optimizer state reset" in plan.note
    # a model-only checkpoint cannot be resumed, but can be evaluated
    (tensors, meta), _, p = _resave(trained, tmp_path, None, lambda m: m.pop("train"))
    with pytest.raises(CheckpointError, match="holds a model only"):
        _validate(tensors, meta, p)
    assert not _validate(tensors, meta, p, training=False).load_optimizer


def test_memory_checked_from_the_metadata_before_loading(trained):
    tensors, meta = read_header(trained)
    with pytest.raises(InsufficientMemory) as e:
        _validate(tensors, meta, trained, available=1000, extra_bytes=10)
    msg = _one_line(e)
    assert "the model needs about" in msg and "1000 B of physical memory" in msg and e.value.available == 1000
    params = sum(math.prod(s) for s in _expected(meta).values())
    assert e.value.needed == params * 4 * 4 + 10  # params, grads, Adam m and v in float32, + extra


def test_read_header_reads_no_data_and_spots_truncation(trained, tmp_path):
    data = trained.read_bytes()
    p = tmp_path / "t.safetensors"
    p.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated or corrupt tensor data"):
        read_header(p)
    tensors, _ = read_header(trained)
    assert all(isinstance(t, TensorInfo) for t in tensors.values())


def test_every_task_model_plan_matches_the_model_it_builds():
    """ModelPlan (rnnkit.train.task): names and shapes from the metadata alone equal the built model's."""
    from rnnkit.tasks.charlm import CharLM, CharLMConfig
    from rnnkit.tasks.forecast import ForecastConfig, Forecaster
    from rnnkit.tasks.longlag import AddingConfig, AddingTask, CopyConfig, CopyTask

    tasks = [CharLM(CharLMConfig(cell="gru", layers=2, hidden=9, emb=5, batch=2, bptt=4), text="abcde " * 40),
             Forecaster(ForecastConfig(cell="rnn", hidden=6, layers=2, horizon=3, series_length=300)),
             AddingTask(AddingConfig(hidden=5, layers=2)), CopyTask(CopyConfig(T=5, hidden=7))]
    for t in tasks:
        plan = type(t).model_plan(t.meta())
        assert plan.shapes == {k: v.shape for k, v in t.model.params.items()}, t.kind
        assert plan.dtype == np.float32 and plan.training_bytes(2) > 4 * plan.param_count() * 4, t.kind
