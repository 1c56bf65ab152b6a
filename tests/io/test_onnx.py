"""ONNX export and import: onnxruntime equals rnnkit's forward; from_onnx(to_onnx(m)) is m bit for bit;
the onnx package's LSTM/GRU/RNN node test cases and torch.onnx.export graphs load; bad graphs get one-line errors."""
import glob
import io
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import rnnkit
from conftest import assert_close
from rnnkit.io.onnx_import import OnnxImportError

KINDS = {"rnn": (rnnkit.RNN, {}), "rnn_relu": (rnnkit.RNN, {"nonlinearity": "relu"}),
         "lstm": (rnnkit.LSTM, {}), "lstm_peephole": (rnnkit.LSTM, {"peephole": True}), "gru": (rnnkit.GRU, {}),
         "gru_lbr0": (rnnkit.GRU, {"linear_before_reset": False})}


@pytest.fixture
def onnx():
    return pytest.importorskip("onnx")


@pytest.fixture
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def make_layer(kind, I=3, H=4, **kw):
    cls, extra = KINDS[kind]
    return cls(I, H, seed=7, **extra, **kw)


def run_ort(ort, model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def state_arrays(state):
    return {"h_n": state.h, "c_n": state.c} if isinstance(state, rnnkit.LSTMState) else {"h_n": state}


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "h0"])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_onnxruntime_equals_forward(ort, kind, L, bidir, with_state):
    """output, h_n [, c_n] in onnxruntime = layer.forward (float32, atol 1e-5), with variable lengths."""
    rng = np.random.default_rng(L * 10 + bidir)
    batch_first = L == 2  # every (kind, direction, state) also runs batch-major once
    layer = make_layer(kind, num_layers=L, bidirectional=bidir, batch_first=batch_first)
    T, B, D, H = 6, 3, 2 if bidir else 1, 4
    x = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3)).astype(np.float32)
    lengths = np.array([6, 2, 4])
    feed = {"input": x, "lengths": lengths.astype(np.int32)}
    state = None
    if with_state:
        is_lstm = kind.startswith("lstm")
        fields = [rng.standard_normal((L * D, B, H)).astype(np.float32) for _ in range(2 if is_lstm else 1)]
        state = rnnkit.LSTMState(*fields) if is_lstm else fields[0]
        feed.update(zip(("h0", "c0"), fields))
    out, final = layer.forward(x, state, lengths)
    got = run_ort(ort, rnnkit.to_onnx(layer, initial_state=with_state), feed)
    assert_close("output", got["output"], out, atol=1e-5)
    for name, want in state_arrays(final).items():
        assert_close(name, got[name], want, atol=1e-5)


def test_export_without_lengths_input(ort):
    layer = make_layer("gru", num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    model = rnnkit.to_onnx(layer, lengths=False, initial_state=False)
    assert [i.name for i in model.graph.input] == ["input"]
    got = run_ort(ort, model, {"input": x})
    out, h = layer.forward(x)
    assert_close("output", got["output"], out, atol=1e-5)
    assert_close("h_n", got["h_n"], h, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(KINDS))
def test_roundtrip_is_exact(onnx, kind, dtype):
    """from_onnx(to_onnx(m)): same class and config, every parameter bit-identical."""
    configs = [dict(num_layers=1), dict(num_layers=3, bidirectional=True, batch_first=True),
               dict(num_layers=2, bias=False)]
    for cfg in configs:
        m = make_layer(kind, dtype=dtype, **cfg)
        back = rnnkit.from_onnx(rnnkit.to_onnx(m))
        assert type(back) is type(m)
        for attr in ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias", "dtype"):
            assert getattr(back, attr) == getattr(m, attr), f"{cfg}: {attr} {getattr(back, attr)} != {getattr(m, attr)}"
        if kind.startswith("rnn"):
            assert back.nonlinearity == m.nonlinearity
        if kind.startswith("lstm"):
            assert back.peephole == m.peephole
        if kind.startswith("gru"):
            assert back.linear_before_reset == m.linear_before_reset
        want, got = m.params, back.params
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), f"{cfg}: {k} differs"


def test_save_onnx_writes_atomically_and_loads(onnx, tmp_path):
    m = make_layer("lstm", num_layers=2)
    path = tmp_path / "sub" / "lstm.onnx"
    rnnkit.save_onnx(rnnkit.to_onnx(m), path)
    assert sorted(os.listdir(path.parent)) == ["lstm.onnx"], "a temp file was left behind"
    back = rnnkit.from_onnx(path)
    assert all(np.array_equal(back.params[k], v) for k, v in m.params.items())


# ----------------------------------------------------------------------------- the onnx package's node tests
NODE_CASES = ["test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_batchwise", "test_lstm_with_peepholes",
              "test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
              "test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias", "test_simple_rnn_batchwise",
              "test_rnn_seq_length"]


def load_node_case(onnx, name):
    """The case's model with its weight inputs (W, R, B, P) baked in as initializers, and its data."""
    d = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node", name)
    if not os.path.isdir(d):
        pytest.skip(f"onnx {onnx.__version__} does not ship {name}")
    model = onnx.load(os.path.join(d, "model.onnx"))
    read = lambda f: onnx.numpy_helper.to_array(onnx.load_tensor(f))  # noqa: E731
    inputs = [read(f) for f in sorted(glob.glob(os.path.join(d, "test_data_set_0", "input_*.pb")))]
    outputs = [read(f) for f in sorted(glob.glob(os.path.join(d, "test_data_set_0", "output_*.pb")))]
    feed = dict(zip([i.name for i in model.graph.input], inputs))
    for w in ("W", "R", "B", "P"):
        if w in feed:
            model.graph.initializer.append(onnx.numpy_helper.from_array(feed.pop(w), w))
    out_names = [n for n in model.graph.node[0].output]
    return model, feed, dict(zip([n for n in out_names if n], outputs))


@pytest.mark.parametrize("name", NODE_CASES)
def test_onnx_node_cases(onnx, name):
    model, feed, expected = load_node_case(onnx, name)
    node = model.graph.node[0]
    layer = rnnkit.from_onnx(model)
    if node.op_type == "GRU":  # the cases shipped with onnx 1.19 all use ONNX's default, 0
        lbr = {a.name: a.i for a in node.attribute}.get("linear_before_reset", 0)
        assert layer.linear_before_reset == bool(lbr), f"{name}: linear_before_reset {lbr} not kept"
    layout = {a.name: a.i for a in node.attribute}.get("layout", 0)
    state = feed.get("initial_h")
    if state is not None and layout:
        state = state.transpose(1, 0, 2)
    if "initial_c" in feed:  # (the peephole case)
        state = rnnkit.LSTMState(state, feed["initial_c"].transpose(1, 0, 2) if layout else feed["initial_c"])
    out, h_n = layer.forward(feed["X"], state, feed.get("sequence_lens"))
    D, H = layer.num_directions, layer.hidden_size
    if "Y" in expected:  # ONNX Y: (T, D, B, H), or (B, T, D, H) with layout=1
        y = out.reshape(out.shape[:2] + (D, H))
        assert_close(f"{name} Y", y if layout else y.transpose(0, 2, 1, 3), expected["Y"], atol=1e-5)
    h = h_n.h if isinstance(h_n, rnnkit.LSTMState) else h_n
    assert_close(f"{name} Y_h", h.transpose(1, 0, 2) if layout else h, expected["Y_h"], atol=1e-5)


def test_gru_seq_length_case_tells_the_formulations_apart(onnx):
    """The other three GRU cases use equal weights, where r * (W_hn h) = W_hn (r * h); test_gru_seq_length has
    random weights: PyTorch's GRU with the same weights misses its expected Y_h, linear_before_reset=False meets it."""
    model, feed, expected = load_node_case(onnx, "test_gru_seq_length")
    layer = rnnkit.from_onnx(model)
    plain = rnnkit.GRU(layer.input_size, layer.hidden_size, bias=layer.bias, seed=0)
    plain.load_params(layer.params)
    assert np.abs(plain.forward(feed["X"])[1] - expected["Y_h"]).max() > 1e-3, "PyTorch's GRU matches too"
    assert_close("test_gru_seq_length Y_h", layer.forward(feed["X"])[1], expected["Y_h"], atol=1e-5)


@pytest.mark.slow
def test_torch_onnx_export_imports(onnx):
    """torch.onnx.export (TorchScript exporter) of nn.LSTM/GRU/RNN loads with the same weights as from_torch."""
    torch = pytest.importorskip("torch")
    for cls, L, bidir, batch_first in [(torch.nn.LSTM, 1, False, False), (torch.nn.LSTM, 2, True, False),
                                       (torch.nn.GRU, 2, False, True), (torch.nn.RNN, 2, True, False)]:
        torch.manual_seed(0)
        tm = cls(3, 4, num_layers=L, bidirectional=bidir, batch_first=batch_first)
        D = 2 if bidir else 1
        x = torch.zeros((2, 5, 3) if batch_first else (5, 2, 3))
        h = torch.zeros(L * D, 2, 4)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(tm, (x, (h, h) if cls is torch.nn.LSTM else h), buf, dynamo=False, opset_version=17)
        layer, want = rnnkit.from_onnx(onnx.load_from_string(buf.getvalue())), rnnkit.from_torch(tm)
        assert (type(layer), layer.num_layers, layer.bidirectional, layer.batch_first) == \
            (type(want), L, bidir, batch_first)
        for k, v in want.params.items():
            assert np.array_equal(layer.params[k], v), f"{cls.__name__} L={L}: {k} differs"


# ----------------------------------------------------------------------------- composed models
def test_compose_embedding_lstm_linear(ort):
    """ids -> Embedding -> 2-layer LSTM -> Linear at every step: logits and final states equal rnnkit's."""
    rng = np.random.default_rng(3)
    V, E, H, T, B = 11, 5, 6, 7, 3
    emb, head = rnnkit.Embedding(V, E, seed=1), rnnkit.Linear(H, V, seed=3)
    lstm = rnnkit.LSTM(E, H, num_layers=2, seed=2)
    ids = rng.integers(0, V, (T, B))
    h0, c0 = (rng.standard_normal((2, B, H)).astype(np.float32) for _ in range(2))
    lengths = np.array([7, 3, 5])
    out, (h_n, c_n) = lstm.forward(emb(ids), rnnkit.LSTMState(h0, c0), lengths)
    logits = head(out)
    model = rnnkit.compose_onnx(lstm, embedding=emb, head=head)
    got = run_ort(ort, model, {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int32), "h0": h0, "c0": c0})
    assert_close("logits", got["output"], logits, atol=1e-5)
    assert_close("h_n", got["h_n"], h_n, atol=1e-5)
    assert_close("c_n", got["c_n"], c_n, atol=1e-5)


def test_compose_last_step_readout(ort):
    """input -> GRU -> Linear on the last layer's final h (the forecaster/classifier read-out)."""
    rng = np.random.default_rng(4)
    gru, head = rnnkit.GRU(2, 5, num_layers=2, seed=1), rnnkit.Linear(5, 3, seed=2)
    x = rng.standard_normal((8, 4, 2)).astype(np.float32)
    lengths = np.array([8, 1, 5, 6])
    _, h_n = gru.forward(x, lengths=lengths)
    model = rnnkit.compose_onnx(gru, head=head, readout="last", initial_state=False)
    got = run_ort(ort, model, {"input": x, "lengths": lengths.astype(np.int32)})
    assert_close("y", got["output"], head(h_n[-1]), atol=1e-5)


# ----------------------------------------------------------------------------- bad input
def edited(kind, edit, **cfg):
    """to_onnx of a small layer, with ``edit(node)`` applied to its first recurrent node."""
    model = rnnkit.to_onnx(make_layer(kind, **cfg))
    node = next(n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))
    edit(node)
    return model


def set_attr(onnx, name, value):
    def edit(node):
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        node.attribute.append(onnx.helper.make_attribute(name, value))
    return edit


@pytest.mark.parametrize("kind,attr,value,message", [
    ("lstm", "clip", 3.0, "attribute clip=3.0"),
    ("lstm", "activations", ["Sigmoid", "Tanh", "Relu"], "activations=['Sigmoid', 'Tanh', 'Relu']"),
    ("gru", "activations", ["HardSigmoid", "Tanh"], "activations=['HardSigmoid', 'Tanh']"),
    ("rnn", "activations", ["Sigmoid"], "activations=['Sigmoid']"),
    ("lstm", "input_forget", 1, "input_forget=1"),
    ("gru", "linear_before_reset", 2, "linear_before_reset=2"),
    ("rnn", "direction", "reverse", "direction='reverse'"),
    ("lstm", "layout", 2, "layout=2"),
])
def test_unsupported_attributes(onnx, kind, attr, value, message):
    with pytest.raises(OnnxImportError) as e:
        rnnkit.from_onnx(edited(kind, set_attr(onnx, attr, value)))
    msg = str(e.value)
    assert message in msg and ("node" in msg) and "\n" not in msg, msg


def test_unsupported_operators(onnx):
    emb, lstm = rnnkit.Embedding(5, 3, seed=0), make_layer("lstm")
    with pytest.raises(OnnxImportError, match=r"^operator Gather \(Gather node 'embedded_node'\) is not supported"):
        rnnkit.from_onnx(rnnkit.compose_onnx(lstm, embedding=emb))
    with pytest.raises(OnnxImportError, match="operator MatMul"):
        rnnkit.from_onnx(rnnkit.compose_onnx(lstm, head=rnnkit.Linear(4, 2, seed=0)))
    with pytest.raises(OnnxImportError, match=r"com\.example\.LSTM"):
        rnnkit.from_onnx(edited("lstm", lambda n: setattr(n, "domain", "com.example")))
    # peepholes: a P input of the wrong shape on an LSTM node
    model = rnnkit.to_onnx(make_layer("lstm"))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((1, 8), np.float32), "P"))
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    node.input.append("P")
    with pytest.raises(OnnxImportError, match=r"P \(peepholes\) has shape \(1, 8\) \(float32\), expected \(1, 12\)"):
        rnnkit.from_onnx(model)
    with pytest.raises(ValueError, match="proj_size=2: the ONNX LSTM operator has no projection"):
        rnnkit.to_onnx(rnnkit.LSTM(3, 4, proj_size=2))


def test_gru_nodes_with_different_linear_before_reset(onnx):
    """One rnnkit layer has one GRU formulation: a stack mixing linear_before_reset 0 and 1 is refused."""
    model = rnnkit.to_onnx(make_layer("gru_lbr0", num_layers=2))
    second = [n for n in model.graph.node if n.op_type == "GRU"][1]
    set_attr(onnx, "linear_before_reset", 1)(second)
    with pytest.raises(OnnxImportError, match=r"\(layer 1\): linear_before_reset 1 differs from layer 0's 0$"):
        rnnkit.from_onnx(model)


def test_wrong_data_path_between_layers(onnx):
    """A Reshape that does not merge (directions, hidden) between two layers is refused, naming the shape."""
    model = rnnkit.to_onnx(make_layer("gru", num_layers=2, bidirectional=True))
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    bad = onnx.numpy_helper.from_array(np.array([0, -1, 8], dtype=np.int64), "bad_shape")
    model.graph.initializer.append(bad)
    reshape.input[1] = "bad_shape"
    with pytest.raises(OnnxImportError, match=r"Reshape node .*shape=\[0, -1, 8\] is not supported"):
        rnnkit.from_onnx(model)


def test_bad_files(onnx, tmp_path):
    with pytest.raises(OnnxImportError, match="not found"):
        rnnkit.from_onnx(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 not a protobuf" * 10)
    with pytest.raises(OnnxImportError, match="junk.onnx.*not a readable ONNX model"):
        rnnkit.from_onnx(junk)
    with pytest.raises(TypeError, match="to_onnx: expected rnnkit.RNN, LSTM or GRU, got Linear"):
        rnnkit.to_onnx(rnnkit.Linear(2, 2))


@pytest.mark.slow
def test_rnnkit_imports_without_onnx():
    """rnnkit imports with onnx absent; to_onnx then says how to install it."""
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import rnnkit\n"
            "try:\n    rnnkit.to_onnx(rnnkit.LSTM(2, 3))\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "pip install 'rnnkit[onnx]'" in r.stdout


@pytest.mark.slow
def test_docs_example_runs(ort, tmp_path):
    """The ONNX example in docs/interop.md runs as written."""
    doc = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "interop.md")
    blocks = re.findall(r"```python\n(.*?)```", open(doc, encoding="utf-8").read(), re.S)
    example = next(b for b in blocks if "onnxruntime" in b)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    r = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    err_y, err_h = (float(v) for v in r.stdout.split())
    assert err_y < 1e-5 and err_h < 1e-5, r.stdout
