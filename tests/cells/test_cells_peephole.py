"""Peephole LSTM (rnnkit.LSTM(peephole=True)): finite differences for every gradient, and the forward
equals onnxruntime's LSTM operator with peepholes P (float32, 1e-5), node built here with onnx.helper."""
import itertools

import numpy as np
import pytest

import rnnkit
from conftest import assert_close, assert_step_equals_forward, check_layer_gradients


@pytest.mark.slow
@pytest.mark.parametrize("L,bidir,use_lengths", list(itertools.product([1, 2], [False, True], [False, True])))
def test_peephole_gradients_match_finite_differences(L, bidir, use_lengths):
    rng = np.random.default_rng(L * 4 + bidir * 2 + use_lengths)
    T, B, I, H, D = 5, 3, 3, 4, 2 if bidir else 1
    layer = rnnkit.LSTM(I, H, num_layers=L, bidirectional=bidir, dtype=np.float64, seed=1, peephole=True)
    for name, p in layer.params.items():  # peepholes large enough to matter
        if name.startswith("weight_p"):
            p[:] = rng.uniform(-1, 1, p.shape)
    x = rng.standard_normal((T, B, I))
    state = rnnkit.LSTMState(*(0.5 * rng.standard_normal((2, L * D, B, H))))
    lengths = np.array([5, 2, 1]) if use_lengths else None
    check_layer_gradients(layer, x, state, lengths, label=f"peephole L={L} bidir={bidir} lengths={use_lengths}")


def test_peephole_weights_are_used_and_zero_peepholes_are_the_lstm():
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    plain = rnnkit.LSTM(3, 5, num_layers=2, dtype=np.float64, seed=3)
    peep = rnnkit.LSTM(3, 5, num_layers=2, dtype=np.float64, seed=3, peephole=True)
    assert set(peep.params) - set(plain.params) == {"weight_p_l0", "weight_p_l1"}
    assert peep.params["weight_p_l0"].shape == (15,)
    peep.load_params({**plain.params, "weight_p_l0": np.zeros(15), "weight_p_l1": np.zeros(15)})
    (o1, s1), (o2, s2) = plain(x), peep(x)
    assert np.array_equal(o1, o2) and np.array_equal(s1.c, s2.c), "P = 0 must be the plain LSTM"
    peep.params["weight_p_l0"][:] = 0.5
    assert np.abs(peep(x)[0] - o1).max() > 1e-3, "weight_p has no effect"


def test_peephole_step_equals_forward():
    layer = rnnkit.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=2, peephole=True)
    assert_step_equals_forward(layer, np.random.default_rng(1).standard_normal((6, 2, 3)), atol=1e-13)


@pytest.mark.slow
def test_peephole_forward_equals_onnxruntime_lstm_operator():
    """One ONNX LSTM node (bidirectional, sequence_lens, initial h and c, P) built with onnx.helper from
    the layer's weights, gate blocks reordered by hand: PyTorch (i, f, g, o) -> ONNX (i, o, f, c)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    T, B, I, H = 6, 3, 3, 4
    rng = np.random.default_rng(5)
    layer = rnnkit.LSTM(I, H, bidirectional=True, seed=4, peephole=True)
    p_i, p_o, p_f = (rng.uniform(-1, 1, (2, H)).astype(np.float32) for _ in range(3))
    for d, s in enumerate(("_l0", "_l0_reverse")):
        layer.params["weight_p" + s][:] = np.concatenate([p_i[d], p_o[d], p_f[d]])

    def onnx_order(w):  # rows i, f, g, o -> i, o, f, c
        i, f, g, o = np.split(w, 4)
        return np.concatenate([i, o, f, g])

    prm = layer.params
    sfx = ("_l0", "_l0_reverse")
    W = np.stack([onnx_order(prm["weight_ih" + s]) for s in sfx])
    R = np.stack([onnx_order(prm["weight_hh" + s]) for s in sfx])
    Bias = np.stack([np.concatenate([onnx_order(prm["bias_ih" + s]), onnx_order(prm["bias_hh" + s])]) for s in sfx])
    P = np.stack([np.concatenate([p_i[d], p_o[d], p_f[d]]) for d in range(2)])  # the operator's [p_i, p_o, p_f]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "seq", "h0", "c0", "P"], ["Y", "Y_h", "Y_c"],
                            hidden_size=H, direction="bidirectional")
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "peephole",
        [helper.make_tensor_value_info("X", f32, [T, B, I]),
         helper.make_tensor_value_info("seq", TensorProto.INT32, [B]),
         helper.make_tensor_value_info("h0", f32, [2, B, H]), helper.make_tensor_value_info("c0", f32, [2, B, H])],
        [helper.make_tensor_value_info(n, f32, shape) for n, shape in (("Y", [T, 2, B, H]), ("Y_h", [2, B, H]),
                                                                        ("Y_c", [2, B, H]))],
        [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (Bias, "B"), (P, "P"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0, c0 = rng.standard_normal((2, 2, B, H)).astype(np.float32)
    lengths = np.array([6, 2, 4], dtype=np.int32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Y_h, Y_c = sess.run(None, {"X": x, "seq": lengths, "h0": h0, "c0": c0})
    out, final = layer.forward(x, rnnkit.LSTMState(h0, c0), lengths)
    assert_close("Y", out.reshape(T, B, 2, H).transpose(0, 2, 1, 3), Y, atol=1e-5)
    assert_close("Y_h", final.h, Y_h, atol=1e-5)
    assert_close("Y_c", final.c, Y_c, atol=1e-5)
