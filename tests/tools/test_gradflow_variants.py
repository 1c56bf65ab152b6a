"""Gradient flow of the LSTM variants: ||dL/dc_t|| (total: carried + through h_t, by the cell's own
``dc_from_h``) for the peephole, projected and LayerNorm LSTMs equals torch autograd on the same
equations written out with copied weights (float64, retain_grad on every c_t), per layer and step."""
import numpy as np
import pytest

import rnnkit
from conftest import assert_close
from rnnkit.diagnostics.gradflow import gradient_flow

VARIANTS = {
    "lstm": lambda I, H, L: rnnkit.LSTM(I, H, num_layers=L, dtype=np.float64, seed=1),
    "peephole": lambda I, H, L: rnnkit.LSTM(I, H, num_layers=L, peephole=True, dtype=np.float64, seed=1),
    "proj": lambda I, H, L: rnnkit.LSTM(I, H, num_layers=L, proj_size=3, dtype=np.float64, seed=1),
    "layernorm": lambda I, H, L: rnnkit.LayerNormLSTM(I, H, num_layers=L, dtype=np.float64, seed=1),
}


def _torch_c_grads(torch, layer, x, R):
    """(L, T, B) squared norms over units of the total dL/dc_t, loss = sum_t R_t . out_t, by autograd
    through the cells' equations (rnnkit.cells.peephole, cells_proj, cells_layernorm docstrings)."""
    F = torch.nn.functional
    p = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in layer.params.items()}
    H, Hh, L = layer.hidden_size, layer.h_size, layer.num_layers
    T, B, _ = x.shape

    def ln(v, name, s):
        return F.layer_norm(v, v.shape[-1:], p[f"layernorm_{name}_weight{s}"], p[f"layernorm_{name}_bias{s}"],
                            eps=1e-5)

    h = [torch.zeros(B, Hh, dtype=torch.float64) for _ in range(L)]
    c = [torch.zeros(B, H, dtype=torch.float64) for _ in range(L)]
    cs, loss = [[] for _ in range(L)], 0.0
    for t in range(T):
        inp = torch.from_numpy(x[t])
        for k in range(L):
            s = f"_l{k}"
            xw, hw = inp @ p["weight_ih" + s].T, h[k] @ p["weight_hh" + s].T
            if "bias_ih" + s in p:
                xw, hw = xw + p["bias_ih" + s], hw + p["bias_hh" + s]
            a = ln(xw, "i", s) + ln(hw, "h", s) if "layernorm_i_weight" + s in p else xw + hw
            ai, af, ag, ao = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            P = p.get("weight_p" + s)
            if P is not None:  # [p_i, p_o, p_f] (ONNX's layout)
                ai, af = ai + P[:H] * c[k], af + P[2 * H:] * c[k]
            u = af.sigmoid() * c[k] + ai.sigmoid() * ag.tanh()
            c[k] = ln(u, "c", s) if "layernorm_c_weight" + s in p else u
            o = (ao + P[H:2 * H] * c[k]).sigmoid() if P is not None else ao.sigmoid()
            m = o * c[k].tanh()
            h[k] = m @ p["weight_hr" + s].T if "weight_hr" + s in p else m
            c[k].retain_grad()
            cs[k].append(c[k])
            inp = h[k]
        loss = loss + (torch.from_numpy(R[t]) * inp).sum()
    loss.backward()
    return np.array([[(ct.grad ** 2).sum(dim=1).numpy() for ct in cs_k] for cs_k in cs])


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cell_state_gradient_norms_equal_torch_autograd(variant, rng):
    torch = pytest.importorskip("torch")
    T, B, I, H, L = 7, 3, 4, 5, 2
    layer = VARIANTS[variant](I, H, L)
    for name, v in layer.params.items():  # LayerNorm's init (1, 0) and zero biases: move them off it
        if name.startswith("layernorm"):
            v += 0.3 * rng.standard_normal(v.shape)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, layer.h_size))
    flow = gradient_flow(layer, x, lambda out: (float((R * out).sum()), R.copy()))
    assert flow.c_sq is not None and flow.c_sq.shape == (L, T, B), f"{variant}: no dL/dc_t reported"
    want = _torch_c_grads(torch, layer, x, R)
    assert_close(f"{variant}: ||dL/dc_t||^2 per layer, step, row", flow.c_sq, want, atol=1e-12, rtol=1e-10)
    assert (flow.c > 0).all()


def test_zero_peepholes_give_the_plain_lstm_flow(rng):
    """A peephole LSTM with P = 0 is the LSTM: the same h and c norms, with lengths and both directions."""
    T, B, I, H = 6, 3, 2, 4
    plain = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=4)
    peep = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, peephole=True, dtype=np.float64, seed=4)
    for k, v in plain.params.items():
        peep.params[k][...] = v
    for k, v in peep.params.items():
        if k.startswith("weight_p"):
            v[...] = 0.0
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, 2 * H))
    lengths = np.array([6, 4, 2])

    def loss(out):
        return float((R * out).sum()), R * (out != 0)

    a = gradient_flow(plain, x, loss, lengths=lengths)
    b = gradient_flow(peep, x, loss, lengths=lengths)
    assert_close("||dL/dh_t||^2", b.h_sq, a.h_sq, atol=1e-14, rtol=1e-12)
    assert_close("||dL/dc_t||^2", b.c_sq, a.c_sq, atol=1e-14, rtol=1e-12)
    assert (b.c_sq[:, 2:, 2] == 0).all(), "0 at padded steps"


@pytest.mark.slow
def test_gradflow_command_takes_the_layernorm_lstm(tmp_path):
    """``rnnkit gradflow --cell layernorm_lstm``: h and c norms in the CSV, a line in the plot."""
    pytest.importorskip("matplotlib")
    from rnnkit.diagnostics.gradflow_experiment import GradFlowConfig, run_gradflow
    from rnnkit.train.plots import plot_gradflow

    cfg = GradFlowConfig(cells=("layernorm_lstm",), T=12, steps=1, batch=4, measure_batch=5, hidden=4,
                         out_dir=str(tmp_path))
    rows = run_gradflow(cfg, progress=lambda s: None)
    assert {r["state"] for r in rows} == {"h", "c"} and len(rows) == 2 * 2 * 12
    assert all(r["norm"] > 0 for r in rows if r["stage"] == "init")
    assert plot_gradflow(rows, tmp_path / "g.png", cfg.T) and (tmp_path / "g.png").stat().st_size > 10_000
