"""The parameter average (--ema) against torch.optim.swa_utils.AveragedModel (float64), and its exchange."""
import numpy as np
import pytest

from conftest import needs_torch
from rnnkit.errors import CheckpointError
from rnnkit.nn.average import ParamAverage


def params(seed=0):
    rng = np.random.default_rng(seed)
    return {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(4)}


@pytest.mark.parametrize("decay", [0.999, 0.9, 0.5, 0.3, 0.0])
def test_matches_torch_averaged_model_float64(decay):
    torch = needs_torch()
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    p = params()
    model = torch.nn.Module()
    for k, v in p.items():
        model.register_parameter(k, torch.nn.Parameter(torch.tensor(v.copy())))
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    ours = ParamAverage(p, decay)
    rng = np.random.default_rng(1)
    for step in range(25):
        for k in p:  # an "optimizer step": the same new values on both sides
            p[k] += 0.1 * rng.standard_normal(p[k].shape)
            getattr(model, k).data.copy_(torch.tensor(p[k]))
        ours.update()
        theirs.update_parameters(model)
        for k in p:
            want = getattr(theirs.module, k).detach().numpy()
            np.testing.assert_allclose(ours.other[k], want, rtol=1e-13, atol=1e-15,
                                       err_msg=f"average of {k} after update {step + 1}")
    assert ours.n == 25


def test_use_exchanges_exactly_and_update_refuses_the_averaged_model():
    p = params()
    av = ParamAverage(p, 0.9)
    before = {k: v.copy() for k, v in p.items()}
    av.use(True)  # no update yet: no average, nothing moves
    assert not av.averaged_in and all(np.array_equal(p[k], before[k]) for k in p)
    av.update()
    for k in p:
        p[k] *= 2.0
    av.update()
    raw = {k: v.copy() for k, v in p.items()}
    mean = {k: v.copy() for k, v in av.other.items()}
    arrays = {k: id(v) for k, v in p.items()}
    with av.averaged():
        assert av.averaged_in
        for k in p:
            assert np.array_equal(p[k], mean[k]) and np.array_equal(av.other[k], raw[k]), k
        with pytest.raises(RuntimeError, match="holds the average"):
            av.update()
    assert not av.averaged_in and {k: id(v) for k, v in p.items()} == arrays  # the model's own arrays
    for k in p:
        assert np.array_equal(p[k], raw[k]) and np.array_equal(av.other[k], mean[k]), k


def test_state_round_trip_and_bad_state():
    p = params()
    av = ParamAverage(p, 0.5)
    for _ in range(3):
        av.update()
        p["b"] += 1.0
    av.use(True)
    arrays, meta = av.state_dict()
    back = ParamAverage({k: v.copy() for k, v in p.items()}, 0.5)
    back.load_state_dict(arrays, meta)
    assert back.n == 3 and back.averaged_in
    back.use(False)
    av.use(False)
    for k in p:
        assert np.array_equal(back.params[k], p[k]) and np.array_equal(back.other[k], av.other[k]), k
    with pytest.raises(CheckpointError, match=r"parameter average 'W': expected shape \(4, 3\), got \(3, 4\)"):
        back.load_state_dict({"W": np.zeros((3, 4)), "b": np.zeros(4)}, meta)
    with pytest.raises(CheckpointError, match="expected arrays for"):
        back.load_state_dict({"W": np.zeros((4, 3))}, meta)
    with pytest.raises(CheckpointError, match="bad or missing field"):
        back.load_state_dict(arrays, {"n": 3})
    with pytest.raises(ValueError, match="decay"):
        ParamAverage(p, 1.0)
