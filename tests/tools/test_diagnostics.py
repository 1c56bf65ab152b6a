"""Diagnostics: gradient-flow norms equal torch autograd's, gate saturation on hand-built cases."""
import json

import numpy as np
import pytest

import rnnkit
from conftest import assert_close, needs_torch
from rnnkit.diagnostics.gradflow import gradient_flow, last_step_loss
from rnnkit.errors import UserError



def _sum_loss(R):
    """loss = sum(R * out): d_out = R (a loss touching every step)."""
    return lambda out: (float((R * out).sum()), R.copy())


def _torch_stepwise_grads(layer, x, R):
    """dL/dh_t of every layer from torch.nn.*Cell copies stacked by hand (retain_grad on each h_t)."""
    torch = needs_torch()
    kind = type(layer).__name__
    T, B, _ = x.shape
    L, H = layer.num_layers, layer.hidden_size
    cells = []
    for l in range(L):
        I = layer.input_size if l == 0 else H
        cell = getattr(torch.nn, kind + "Cell")(I, H, dtype=torch.float64)
        with torch.no_grad():
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, n).copy_(torch.from_numpy(layer.params[f"{n}_l{l}"]))
        cells.append(cell)
    zeros = torch.zeros(B, H, dtype=torch.float64)
    state = [(zeros, zeros) if kind == "LSTM" else zeros for _ in range(L)]
    hs, loss = [[] for _ in range(L)], 0.0
    for t in range(T):
        inp = torch.from_numpy(x[t])
        for l, cell in enumerate(cells):
            state[l] = cell(inp, state[l])
            h = state[l][0] if kind == "LSTM" else state[l]
            h.retain_grad()
            hs[l].append(h)
            inp = h
        loss = loss + (torch.from_numpy(R[t]) * inp).sum()  # out_t = top layer's h_t
    loss.backward()
    return np.array([[h.grad.norm().item() for h in hs_l] for hs_l in hs])


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
def test_gradflow_h_norms_equal_torch_autograd(cls, rng):
    T, B, I, H, L = 9, 3, 4, 5, 2
    layer = cls(I, H, num_layers=L, dtype=np.float64, seed=1)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, H))
    flow = gradient_flow(layer, x, _sum_loss(R))
    assert flow.h.shape == (L, T)
    assert_close("||dL/dh_t||", flow.h, _torch_stepwise_grads(layer, x, R), atol=1e-10, rtol=1e-10)
    assert (flow.c is None) == (cls is not rnnkit.LSTM)


def _torch_manual_lstm(layer, x, loss_of_hs):
    """A single-layer LSTM written out in torch ops with copied weights; retain_grad on h_t, c_t."""
    torch = needs_torch()
    p = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in layer.params.items()}
    H = layer.hidden_size
    T, B, _ = x.shape
    h = torch.zeros(B, H, dtype=torch.float64)
    c = torch.zeros(B, H, dtype=torch.float64)
    hs, cs = [], []
    for t in range(T):
        a = torch.from_numpy(x[t]) @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T + p["bias_hh_l0"]
        i, f, g, o = a[:, :H].sigmoid(), a[:, H:2*H].sigmoid(), a[:, 2*H:3*H].tanh(), a[:, 3*H:].sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
        c.retain_grad(), h.retain_grad()
        hs.append(h), cs.append(c)
    loss_of_hs(hs).backward()
    return (np.array([v.grad.norm().item() for v in hs]), np.array([v.grad.norm().item() for v in cs]))


def test_gradflow_lstm_h_and_c_last_step_loss_equal_torch(rng):
    """Adding-problem shape: Linear+sigmoid head on the last step, MSE; total dL/dh_t and dL/dc_t."""
    torch = needs_torch()
    T, B, I, H = 30, 4, 2, 6
    layer = rnnkit.LSTM(I, H, dtype=np.float64, seed=3, forget_bias=2.0)
    head = rnnkit.Linear(H, 1, dtype=np.float64, seed=4)
    sig = rnnkit.Sigmoid()
    x = rng.standard_normal((T, B, I))
    y = rng.uniform(0, 1, (B, 1))
    loss_fn = last_step_loss(lambda h: sig(head(h)), lambda d: head.backward(sig.backward(d)), rnnkit.mse, y)
    flow = gradient_flow(layer, x, loss_fn)
    W, b = torch.from_numpy(head.params["weight"]), torch.from_numpy(head.params["bias"])

    def loss_of_hs(hs):
        pred = torch.sigmoid(hs[-1] @ W.T + b)
        return ((pred - torch.from_numpy(y)) ** 2).mean()

    want_h, want_c = _torch_manual_lstm(layer, x, loss_of_hs)
    assert_close("||dL/dh_t||", flow.h[0], want_h, atol=1e-14, rtol=1e-9)
    assert_close("||dL/dc_t||", flow.c[0], want_c, atol=1e-14, rtol=1e-9)
    assert flow.h[0, -1] > 0 and flow.h[0, 0] < flow.h[0, -1]  # nonzero, decays with distance


def test_gradflow_finite_differences_float64(rng):
    """Independent of torch: dL/dh_t by perturbing h_t through a hand-unrolled numpy Elman RNN."""
    T, B, I, H = 6, 2, 3, 4
    layer = rnnkit.RNN(I, H, dtype=np.float64, seed=7)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, H))
    flow = gradient_flow(layer, x, _sum_loss(R))
    p = layer.params

    def loss_with_bump(t0, bump):
        h, total = np.zeros((B, H)), 0.0
        for t in range(T):
            h = np.tanh(x[t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T + p["bias_hh_l0"])
            if t == t0:
                h = h + bump
            total += (R[t] * h).sum()
        return total

    eps, want = 1e-6, []
    for t in range(T):
        g = np.zeros((B, H))
        for idx in np.ndindex(B, H):
            e = np.zeros((B, H))
            e[idx] = eps
            g[idx] = (loss_with_bump(t, e) - loss_with_bump(t, -e)) / (2 * eps)
        want.append(np.linalg.norm(g))
    assert_close("||dL/dh_t|| vs finite differences", flow.h[0], np.array(want), atol=1e-8, rtol=1e-7)


def test_gradflow_padding_matches_unpadded_rows(rng):
    """With lengths, each row's gradients equal that row run alone at its own length (0 past it)."""
    T, B, I, H = 8, 3, 2, 4
    layer = rnnkit.LSTM(I, H, dtype=np.float64, seed=2)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, H))
    lengths = np.array([8, 5, 3])
    flow = gradient_flow(layer, x, lambda out: (float((R * out).sum()), R * (out != 0)), lengths=lengths)
    want_h2, want_c2, want_dist2 = np.zeros(T), np.zeros(T), np.zeros(T)
    for b, n in enumerate(lengths):  # squared Frobenius norms add over batch rows
        solo = gradient_flow(layer, x[:n, b : b + 1].copy(), _sum_loss(R[:n, b : b + 1].copy()))
        want_h2[:n] += solo.h[0] ** 2
        want_c2[:n] += solo.c[0] ** 2
        want_dist2[:n] += solo.h[0, ::-1] ** 2  # distance k = n - 1 - t from the row's last step
    assert_close("by_distance('h')", flow.by_distance("h")[0] ** 2, want_dist2, atol=1e-12, rtol=1e-10)
    assert_close("||dL/dh_t||^2 with padding", flow.h[0] ** 2, want_h2, atol=1e-12, rtol=1e-10)
    assert_close("||dL/dc_t||^2 with padding", flow.c[0] ** 2, want_c2, atol=1e-12, rtol=1e-10)


# ----------------------------------------------------------------------------- gate saturation
from rnnkit.diagnostics.gates import SaturationCounter, gate_saturation, write_saturation  # noqa: E402
from rnnkit.train.plots import plot_saturation  # noqa: E402


def test_saturation_counts_hand_built_activations():
    """Hand-built gate values: fractions are exact, padded steps do not count, g is ignored."""
    T, B, H = 4, 2, 3
    a = np.full((T, B, 4 * H), 0.5)  # blocks i, f, g, o
    a[:, :, 0] = 0.05  # i unit 0: always left-saturated
    a[:2, :, H + 1] = 0.95  # f unit 1: right-saturated at t = 0, 1 for both rows
    a[:, 1, 3 * H + 2] = 0.0  # o unit 2: left-saturated in row 1 only (steps 0..2 valid)
    a[:, :, 2 * H : 3 * H] = -0.99  # g: tanh candidate, never counted
    a[3, 1] = 0.99  # padded step of row 1: everything "saturated" there, must be ignored
    layer = rnnkit.LSTM(1, H, dtype=np.float64, seed=0)
    c = SaturationCounter(layer)
    c.add([a], lengths=np.array([4, 3]))
    sat = c.result()
    assert sat.gates == ("i", "f", "o") and sat.steps == 7
    want_left = np.zeros((1, 3, H))
    want_right = np.zeros((1, 3, H))
    want_left[0, 0, 0] = 1.0
    want_right[0, 1, 1] = 4 / 7
    want_left[0, 2, 2] = 3 / 7
    assert_close("left fractions", sat.left, want_left, atol=1e-15)
    assert_close("right fractions", sat.right, want_right, atol=1e-15)


def test_saturation_through_a_real_lstm_forward(tmp_path):
    """Weights set so that each gate's value is known from the input sign: x = +1 at 3 of 5 valid steps."""
    H = 2
    layer = rnnkit.LSTM(1, H, dtype=np.float64, seed=0)
    for k, v in layer.params.items():
        v[...] = 0.0
    p = layer.params
    p["weight_ih_l0"][0, 0] = 10.0  # i unit 0 = sigma(10 x): > 0.9 when x = +1, < 0.1 when x = -1
    p["bias_ih_l0"][H + 1] = 5.0  # f unit 1 = sigma(5) > 0.9 always
    p["bias_ih_l0"][3 * H] = -5.0  # o unit 0 = sigma(-5) < 0.1 always
    x = np.array([1, -1, 1, 1, -1, 1, 1], dtype=np.float64).reshape(7, 1, 1)
    sat = gate_saturation(layer, [(x, np.array([5])), (x[:2].copy(), None)])
    assert sat.steps == 7
    i_left, i_right = sat.left[0, 0, 0], sat.right[0, 0, 0]
    assert (i_left, i_right) == (3 / 7, 4 / 7)  # valid x: 1 -1 1 1 -1 | 1 -1
    assert sat.right[0, 1, 1] == 1.0 and sat.left[0, 1, 1] == 0.0
    assert sat.left[0, 2, 0] == 1.0
    assert sat.left[0, 1, 0] == 0.0 and sat.right[0, 1, 0] == 0.0  # sigma(0) = 0.5: unsaturated
    write_saturation(sat, tmp_path / "sat.csv", tmp_path / "sat.json")
    rows = (tmp_path / "sat.csv").read_text().splitlines()
    assert rows[0] == "layer,direction,gate,unit,left,right" and len(rows) == 1 + 3 * H
    assert rows[1].startswith("0,0,i,0,0.428571")
    plot_saturation(sat, tmp_path / "sat.png")
    assert (tmp_path / "sat.png").stat().st_size > 10_000


def test_saturation_rejects_rnn():
    with pytest.raises(ValueError, match="Elman RNN has no gates"):
        SaturationCounter(rnnkit.RNN(2, 3))


# ----------------------------------------------------------------------------- gradflow command
def test_adding_flow_same_loss_and_grads_as_the_task(rng):
    """The gradflow measurement runs the task's own loss: same value, same parameter gradients."""
    from rnnkit.data.longlag import adding_batch
    from rnnkit.diagnostics.gradflow_experiment import adding_flow
    from rnnkit.tasks.longlag import AddingConfig, AddingTask

    task = AddingTask(AddingConfig(T=12, cell="lstm", hidden=5))
    batch = adding_batch(rng, 12, 6)
    task.model.zero_grad()
    loss, _, _ = task.loss_and_backward(batch, None)
    want = {k: v.copy() for k, v in task.model.grads.items()}
    task.model.zero_grad()
    flow = adding_flow(task, batch)
    assert abs(flow.loss - loss) < 1e-6
    for k, g in task.model.grads.items():
        assert_close(k, g, want[k], atol=1e-6, rtol=1e-4)
    assert flow.by_distance("h")[0, 0] > 0 and np.all(flow.by_distance("c")[0, : int(batch.lengths.min())] > 0)


@pytest.mark.slow
def test_gradflow_command_writes_csv_and_png(tmp_path):
    from rnnkit.diagnostics.gradflow_experiment import GradFlowConfig, run_gradflow, write_gradflow_csv
    from rnnkit.train.plots import plot_gradflow
    import csv

    cfg = GradFlowConfig(cells=("rnn", "lstm"), T=12, steps=2, batch=4, measure_batch=5, hidden=4,
                         out_dir=str(tmp_path))
    rows = run_gradflow(cfg, progress=lambda s: None)
    write_gradflow_csv(rows, tmp_path / "g.csv")
    plot_gradflow(rows, tmp_path / "g.png", cfg.T)
    back = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert len(back) == len(rows) == (2 + 2 * 2) * 12  # rnn h, lstm h+c; init+trained; 12 distances
    assert {r["state"] for r in back if r["cell"] == "rnn"} == {"h"}
    init = [float(r["norm"]) for r in back if r["cell"] == "lstm" and r["stage"] == "init" and r["state"] == "h"]
    trained = [float(r["norm"]) for r in back if r["cell"] == "lstm" and r["stage"] == "trained" and r["state"] == "h"]
    assert init != trained and all(v > 0 for v in init)
    assert (tmp_path / "g.png").stat().st_size > 20_000
    with pytest.raises(UserError, match="--cell: expected a comma list"):
        GradFlowConfig(cells=("lstm", "tcn"))


# ----------------------------------------------------------------------------- long-lag benchmark
def test_longlag_success_criteria_boundaries():
    from rnnkit.bench.longlag import success

    assert success("adding", {"wrong": 3.0}) and not success("adding", {"wrong": 4.0})  # >= 2557 of 2560
    base = 10 * np.log(8) / (100 + 20)
    assert success("copy", {"loss": 0.49 * base, "baseline": base})
    assert not success("copy", {"loss": 0.5 * base, "baseline": base})


def test_longlag_run_counts_sequences_and_table(tmp_path):
    from rnnkit.bench import longlag as lb

    cfg = lb.LongLagBenchConfig(tasks=("adding",), T=(12,), cells=("lstm",), seeds=1, budget=50, eval_every=20,
                                batch=10)
    seen = []
    results = lb.run_bench(cfg, log=seen.append)
    r = results[0]
    assert [e["sequences"] for e in seen] == [0, 20, 40, 50]  # an evaluation every 20 and at the end
    assert r.sequences == 50 and r.solved_at is None and r.metric["wrong"] == seen[-1]["wrong"]
    fake = [lb.RunResult("adding", 100, "lstm", 0, 64_000, 64_000, {"wrong": 2.0, "loss": 1e-4}, 1.0),
            lb.RunResult("adding", 100, "lstm", 1, None, 200_000, {"wrong": 2100.0, "loss": 0.04}, 1.0)]
    text = lb.table(fake, cfg)
    assert "| adding | 100 | lstm | 64,000 / not solved within 200,000 | 2/2560 wrong, MSE 0.0001 / " \
           "2100/2560 wrong, MSE 0.0400 | 74,000 (H&S 1997, Table 7) |" in text
    with pytest.raises(UserError, match="--cells: expected a comma list"):
        lb.LongLagBenchConfig(cells=("lstm", "tcn"))


# ----------------------------------------------------------------------------- clipping experiment
def test_clipping_experiment_steps_are_bounded_by_lr_times_max_norm():
    """Clipped SGD moves the weights by at most lr * max_norm per step; the log keeps the norm before clipping."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "clipping.py"
    spec = importlib.util.spec_from_file_location("clipping_experiment", path)
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    cfg = mod.ClippingConfig(hidden=8, T=12, lag=2, batch=4, steps=6, scale=3.0, max_norm=0.5, lr=0.1)
    log_free, log_clip = mod.train(cfg, clip=False), mod.train(cfg, clip=True)
    assert log_free[0]["grad_norm"] == log_clip[0]["grad_norm"] > cfg.max_norm  # same init, same batch
    model = mod.DelayModel(cfg)
    before = {k: v.copy() for k, v in model.params.items()}
    opt = mod.SGD(model.params, model.grads, lr=cfg.lr)
    x, y = mod.delay_batch(np.random.default_rng(0), cfg)
    model.zero_grad()
    model.loss_and_backward(x, y)
    norm = mod.clip_grad_norm(model.grads, cfg.max_norm)
    opt.step()
    moved = np.sqrt(sum(((model.params[k] - before[k]).astype(np.float64) ** 2).sum() for k in before))
    assert norm > cfg.max_norm and abs(moved - cfg.lr * cfg.max_norm) < 1e-4


def test_longlag_main_flags_and_output_file(tmp_path, capsys):
    import argparse

    from rnnkit.cli.bench import add_longlag_args, longlag_main

    p = argparse.ArgumentParser()
    add_longlag_args(p)
    out, log = tmp_path / "table.md", tmp_path / "log.jsonl"
    args = p.parse_args(["--tasks", "copy", "--T", "12", "--cells", "gru", "--seeds", "1", "--budget", "20",
                         "--eval-every", "10", "--batch", "10", "--hidden", "4", "--out", str(out), "--log", str(log)])
    assert longlag_main(args) == 0
    text = out.read_text()
    assert text.startswith("`rnnkit bench longlag --tasks copy --T 12 --cells gru --seeds 1 --budget 20")
    assert "| copy | 12 | gru | not solved within 20 |" in text and text in capsys.readouterr().out
    assert [json.loads(line)["sequences"] for line in log.read_text().splitlines()] == [0, 10, 20]
    with pytest.raises(UserError, match="--T: expected a comma list of integers"):
        longlag_main(p.parse_args(["--T", "5"]))


@pytest.mark.parametrize("flag,value", [("--forget-bias", "nan"), ("--lr", "inf"), ("--seed", "-1")])
def test_gradflow_bad_numbers_are_one_line_errors(flag, value, capsys, tmp_path):
    from rnnkit.cli import main

    assert main(["gradflow", flag, value, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing ran
