"""An input given as table rows (rnnkit.engine.rows): the first projection on the table (a gather),
its gradient a scatter-add and one small GEMM; need_dx=False.  float64 against finite differences,
against the same layer fed the formed rows, and against PyTorch's Embedding -> layer."""
import numpy as np
import pytest

from conftest import CELLS, LAYERS, assert_close, check_fd, needs_torch, torch_layer_classes
from rnnkit.engine.rows import Rows, projects_on_table
from rnnkit.nn.blocks import Embedding

V, I, H, T, B = 5, 4, 3, 4, 3  # V < T*B: the table path


def pair(kind, **kw):
    return [LAYERS[kind](I, H, num_layers=2, dtype=np.float64, seed=7, **kw) for _ in range(2)]


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("opts", [{}, {"bidirectional": True, "batch_first": True}])
def test_table_path_equals_the_formed_rows(kind, opts, rng):
    """Outputs, final state, every parameter gradient and d_table equal the layer fed table[ids] (1e-13)."""
    a, b = pair(kind, **opts)
    table = rng.standard_normal((V, I))
    ids = rng.integers(0, V, (B, T) if opts.get("batch_first") else (T, B))
    rows = Rows(table, ids)
    assert projects_on_table(rows)
    out_a, fin_a = a(rows)
    out_b, fin_b = b(table[ids])
    assert_close("out", out_a, out_b, atol=1e-13)
    d = rng.standard_normal(out_a.shape)
    d_table, _ = a.backward(d)
    d_x, _ = b.backward(d)
    want = np.zeros_like(table)
    np.add.at(want, ids.reshape(-1), d_x.reshape(-1, I))
    assert_close("d_table", d_table, want, atol=1e-13)
    for name in a.grads:
        assert_close(f"grad {name}", a.grads[name], b.grads[name], atol=1e-13)


@pytest.mark.parametrize("kind", CELLS)
def test_table_path_gradients_match_finite_differences(kind, rng):
    layer = LAYERS[kind](I, H, num_layers=2, dtype=np.float64, seed=3)
    table = rng.standard_normal((V, I))
    ids = rng.integers(0, V, (T, B))
    R = rng.standard_normal((T, B, H))

    def loss():
        return float((layer(Rows(table, ids))[0] * R).sum())

    layer.zero_grad()
    loss()
    d_table, _ = layer.backward(R)
    checks = {"d_table": (d_table, table)}
    checks.update({f"grad {n}": (layer.grads[n].copy(), p) for n, p in layer.params.items()})
    check_fd(loss, checks, kind)


def test_more_rows_than_ids_forms_them_and_input_dropout_too(rng):
    """V >= T*B, or an input dropout mask on the first layer: x is formed (same gradients either way)."""
    table = rng.standard_normal((50, I))
    ids = rng.integers(0, 50, (T, B))
    assert not projects_on_table(Rows(table, ids))
    a, b = pair("lstm")
    a(Rows(table, ids))
    b(table[ids])
    assert a.tape.layers[0].input.shape == (T, B, I), "V >= T*B: the rows are formed"
    d = rng.standard_normal((T, B, H))
    d_table, _ = a.backward(d)
    d_x, _ = b.backward(d)
    want = np.zeros_like(table)
    np.add.at(want, ids.reshape(-1), d_x.reshape(-1, I))
    assert_close("d_table", d_table, want, atol=1e-13)
    c = pair("lstm", input_dropout=0.5)[0].train()
    c(Rows(table[:V], ids % V), rng=np.random.default_rng(0))
    assert isinstance(c.tape.layers[0].input, np.ndarray), "input dropout: the rows are formed"
    assert c.backward(d)[0].shape == (V, I)


@pytest.mark.parametrize("kind", CELLS)
def test_need_dx_false_skips_dx_only(kind, rng):
    a, b = pair(kind, bidirectional=True)
    x = rng.standard_normal((T, B, I))
    a(x)
    b(x)
    d = rng.standard_normal((T, B, 2 * H))
    d_x, d_s0 = a.backward(d, need_dx=False)
    _, want_s0 = b.backward(d)
    assert d_x is None
    for name in a.grads:
        assert_close(f"grad {name}", a.grads[name], b.grads[name], atol=0)
    assert_close("d_state0", np.asarray(d_s0[0] if isinstance(d_s0, tuple) else d_s0),
                 np.asarray(want_s0[0] if isinstance(want_s0, tuple) else want_s0), atol=0)


def test_bad_ids_name_the_argument(rng):
    layer = LAYERS["gru"](I, H, dtype=np.float64)
    table = rng.standard_normal((V, I))
    with pytest.raises(ValueError, match=r"x\.ids: every id must be in 0\.\.4, got range 0\.\.5"):
        layer(Rows(table, np.array([[0, 5]])))
    with pytest.raises(TypeError, match=r"x\.ids: expected a 2-d array of integer ids"):
        layer(Rows(table, np.zeros((2, 2))))
    with pytest.raises(ValueError, match=r"x\.table: expected shape \(\*, 4\)"):
        layer(Rows(rng.standard_normal((V, I + 1)), np.zeros((2, 2), int)))


@pytest.mark.parametrize("kind", CELLS)
def test_embedding_lookup_then_layer_equals_torch(kind, rng):
    """Embedding.lookup -> layer, float64, with PyTorch's weights: outputs, dE and every gradient."""
    torch = needs_torch()
    emb = Embedding(V, I, dtype=np.float64, seed=1)
    layer = LAYERS[kind](I, H, num_layers=2, dtype=np.float64, seed=2)
    t_emb = torch.nn.Embedding(V, I).double()
    t_layer = torch_layer_classes(torch)[kind](I, H, num_layers=2).double()
    t_emb.weight.data = torch.tensor(emb.params["weight"])
    for n, p in t_layer.named_parameters():
        p.data = torch.tensor(layer.params[n])
    ids = rng.integers(0, V, (T, B))
    R = rng.standard_normal((T, B, H))
    out, _ = layer(emb.lookup(ids))
    d_table, _ = layer.backward(R)
    emb.backward(d_table)
    t_out, _ = t_layer(t_emb(torch.from_numpy(ids)))
    (t_out * torch.from_numpy(R)).sum().backward()
    assert_close("out", out, t_out.detach().numpy(), atol=1e-12)
    assert_close("grad emb.weight", emb.grads["weight"], t_emb.weight.grad.numpy(), atol=1e-12)
    for n, p in t_layer.named_parameters():
        assert_close(f"grad {n}", layer.grads[n], p.grad.numpy(), atol=1e-12)


def test_embedding_lookup_with_row_dropout_equals_forward(rng):
    """The same row mask: lookup's table gradient gives forward's dE."""
    e1, e2 = (Embedding(V, I, dtype=np.float64, seed=1, dropout=0.4).train() for _ in range(2))
    ids = rng.integers(0, V, (T, B))
    rows = e1.lookup(ids, rng=np.random.default_rng(5))
    x = e2.forward(ids, rng=np.random.default_rng(5))
    assert_close("rows", rows.materialise(), x, atol=0)
    dy = rng.standard_normal((T, B, I))
    d_table = np.zeros((V, I))
    np.add.at(d_table, ids.reshape(-1), dy.reshape(-1, I))
    e1.backward(d_table)
    e2.backward(dy)
    assert_close("grad emb.weight", e1.grads["weight"], e2.grads["weight"], atol=1e-14)
