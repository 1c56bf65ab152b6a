"""Row blocks of the per-step GEMM (rnnkit.engine.gemm_rows) and the big GEMMs split over threads
(rnnkit.engine.big_gemm): the same numbers whatever the blocks, float64."""
import numpy as np
import pytest

import rnnkit
from rnnkit.engine import big_gemm, gemm_rows
from rnnkit.engine.threads import use_cores
from rnnkit.engine.step_gemm import PACKED, pack, packed_gemm, packed_shape, times_w, times_wt


@pytest.mark.parametrize("rows", [0, 1, 3, 8, 32, 100])
def test_times_wt_and_times_w_in_row_blocks_equal_numpy(rows):
    rng = np.random.default_rng(0)
    M, H, G = 21, 16, 64
    W = rng.standard_normal((G, H))
    WT = np.ascontiguousarray(W.T)
    h, d = rng.standard_normal((M, H)), rng.standard_normal((M, G))
    out, back = np.empty((M, G)), np.empty((M, H))
    times_wt(h, W, WT, out, rows)
    times_w(d, W, WT, back, rows)
    np.testing.assert_allclose(out, h @ W.T, rtol=1e-13, atol=1e-13, err_msg="hw = h @ W_hh.T")
    np.testing.assert_allclose(back, d @ W, rtol=1e-13, atol=1e-13, err_msg="dh = d_hw @ W_hh")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (21, 16, 64), (19, 65, 260), (7, 33, 17), (16, 128, 512), (3, 5, 100),
                                   (9, 0, 4), (0, 3, 4)])
def test_the_packed_micro_kernel_equals_numpy(M, K, N, dtype):
    """Every tile height (8, 4, 2, 1 rows), full and partial panels, K = 0, float32 and float64."""
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    A, B = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    Bp = np.empty(packed_shape(K, N, dtype), dtype)
    pack(B, Bp, np.empty(0, np.intp))
    C = np.full((M, N), np.nan, dtype)
    packed_gemm(A, Bp, C)
    tol = 1e-13 if dtype == np.float64 else 2e-5 * max(1, K) ** 0.5
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=tol, atol=tol, err_msg="C = A @ B")


def packed_by_definition(B, cols, dtype):
    """pack's output from its definition: Bp[p K + k, j] = B[k, c(p NB + j)], zero past the last column."""
    Bs = B[:, cols] if len(cols) else B
    K, N = Bs.shape
    P, nb = packed_shape(K, N, dtype)[0] // max(K, 1), packed_shape(K, N, dtype)[1]
    padded = np.zeros((K, P * nb), dtype)
    padded[:, :N] = Bs
    return padded.reshape(K, P, nb).transpose(1, 0, 2).reshape(P * K, nb)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("G,H", [(1, 1), (32, 16), (64, 16), (70, 13), (96, 40), (100, 33), (260, 65), (128, 7)])
@pytest.mark.parametrize("how", ["W.T", "W.T gathered", "W[::2].T", "W[::-1].T", "W"])
def test_pack_equals_its_definition_for_every_layout(G, H, dtype, how):
    """The forward's operand W.T (k along memory: blocks transposed in registers, the rest of K and a partial last
    panel element by element), gathered (a unit shard's rows), strided, reversed (element by element), and the
    backward's W (k across memory): every element where the definition puts it, bit for bit."""
    rng = np.random.default_rng(G * 100 + H)
    W2 = rng.standard_normal((2 * G, H)).astype(dtype)
    W = W2[:G]
    B = {"W.T": W.T, "W.T gathered": W.T, "W[::2].T": W2[::2].T, "W[::-1].T": W[::-1].T, "W": W}[how]
    cols = np.empty(0, np.intp)
    if how == "W.T gathered":
        cols = rng.permutation(G)[: max(1, 2 * G // 3)]
    N = len(cols) or B.shape[1]
    Bp = np.full(packed_shape(B.shape[0], N, dtype), np.nan, dtype)
    pack(B, Bp, cols.astype(np.intp))
    np.testing.assert_array_equal(Bp, packed_by_definition(B, cols, dtype), err_msg=f"Bp = pack({how})")


def test_the_micro_kernel_writes_rows_of_a_buffer_and_nothing_else():
    rng = np.random.default_rng(4)
    G, H, M = 70, 13, 11  # a partial last panel in both directions
    W, h, d = rng.standard_normal((G, H)), rng.standard_normal((M, H)), rng.standard_normal((M, G))
    out, back = np.zeros((M + 6, G)), np.zeros((M + 6, H))
    times_wt(h, W, gemm_rows.packed_weights(W, backward=False), out[3 : 3 + M], PACKED)
    times_w(d, W, gemm_rows.packed_weights(W, backward=True), back[3 : 3 + M], PACKED)
    np.testing.assert_allclose(out[3 : 3 + M], h @ W.T, rtol=1e-13, atol=1e-13, err_msg="hw = h @ W_hh.T")
    np.testing.assert_allclose(back[3 : 3 + M], d @ W, rtol=1e-13, atol=1e-13, err_msg="dh = d_hw @ W_hh")
    assert not out[:3].any() and not out[3 + M :].any() and not back[:3].any() and not back[3 + M :].any()
    with pytest.raises(ValueError, match="unit column strides"):
        packed_gemm(h, gemm_rows.packed_weights(W, backward=False), np.zeros((G, M)).T)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_layer_computes_the_same_whatever_the_row_blocks(monkeypatch, cell):
    cls = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[cell]
    x = np.random.default_rng(1).standard_normal((7, 19, 5))
    results = []
    for rows in ("0", "2", "8", "packed"):
        monkeypatch.setenv("RNNKIT_GEMM_ROWS", rows)
        layer = cls(5, 12, num_layers=2, dtype=np.float64, seed=3)
        out, _ = layer.forward(x)
        d_x, _ = layer.backward(np.cos(out))
        results.append((out, d_x, {k: g.copy() for k, g in layer.grads.items()}))
    for out, d_x, grads in results[1:]:
        np.testing.assert_allclose(out, results[0][0], rtol=0, atol=1e-13, err_msg="out")
        np.testing.assert_allclose(d_x, results[0][1], rtol=0, atol=1e-13, err_msg="d_x")
        for k in grads:
            np.testing.assert_allclose(grads[k], results[0][2][k], rtol=0, atol=1e-12, err_msg=f"grad {k}")


def test_the_measured_block_is_a_candidate_and_the_choice_needs_a_gain(monkeypatch):
    monkeypatch.delenv("RNNKIT_GEMM_ROWS", raising=False)
    times = gemm_rows.time_rows(32, 16, 64, np.float32, backward=False)
    assert set(times) == {0, 2, 4, 8, 16, gemm_rows.PACKED}
    assert all(t > 0 for t in times.values())
    assert gemm_rows.choose({0: 1.0, 4: 0.97, 8: 0.99}) == 0, "a block within the noise margin buys nothing"
    assert gemm_rows.choose({0: 1.0, 4: 0.5, 8: 0.7}) == 4
    assert gemm_rows.step_gemm_rows(1, 16, 64, np.float32, False) == 0, "one row: one BLAS call (a GEMV)"
    assert gemm_rows.step_gemm_rows(2, 16, 64, np.float32, False) == 0, "two rows of a small product: one call"
    small = gemm_rows.time_rows(8, 16, 64, np.float32, backward=True, blocks=False)
    assert set(small) == {0, gemm_rows.PACKED}, "a small product: the whole one or the micro-kernel"


def test_rnnkit_gemm_rows_forces_the_block(monkeypatch):
    monkeypatch.setenv("RNNKIT_GEMM_ROWS", "4")
    assert gemm_rows.step_gemm_rows(64, 128, 512, np.float32, True) == 4
    monkeypatch.setenv("RNNKIT_GEMM_ROWS", "packed")
    assert gemm_rows.step_gemm_rows(64, 128, 512, np.float32, False) == PACKED
    monkeypatch.setenv("RNNKIT_GEMM_ROWS", "four")
    with pytest.raises(ValueError, match="RNNKIT_GEMM_ROWS: expected an integer >= 0 or .packed., got 'four'"):
        gemm_rows.step_gemm_rows(64, 128, 512, np.float32, True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cores,split", [(1, False), (2, False), (2, True), (3, True)])
def test_a_thin_big_gemm_runs_on_the_micro_kernel_and_equals_numpy(monkeypatch, cores, split, dtype):
    monkeypatch.setattr(big_gemm, "MIN_MEASURED", 0)
    monkeypatch.setenv("RNNKIT_GEMM_ROWS", "packed")  # where it pays is measured; forced here
    if split:
        monkeypatch.setattr(big_gemm, "MIN_SPLIT", 0)
    calls = []
    monkeypatch.setattr(big_gemm, "packed_gemm",
                        lambda a, Bp, out: (calls.append(a.shape[0]), packed_gemm(a, Bp, out)))
    rng = np.random.default_rng(5)
    x, W = rng.standard_normal((301, 40)).astype(dtype), rng.standard_normal((70, 40)).astype(dtype)  # K = 40
    with use_cores(cores):
        got = big_gemm.dot(x, W.T)
    tol = 1e-13 if dtype == np.float64 else 1e-4
    want = x.astype(np.float64) @ W.T.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg="x @ W.T")
    assert sum(calls) == 301 and len(calls) == (cores if split else 1), calls
    wide = rng.standard_normal((301, 100)).astype(dtype)  # K = 100 > MICRO_MAX_K: BLAS
    np.testing.assert_allclose(big_gemm.dot(wide, rng.standard_normal((100, 8)).astype(dtype)).shape, (301, 8))
    assert sum(calls) == 301, "a product with K > MICRO_MAX_K stays on BLAS"
    monkeypatch.setenv("RNNKIT_GEMM_ROWS", "0")
    np.testing.assert_allclose(big_gemm.dot(x, W.T), got, rtol=tol, atol=tol, err_msg="x @ W.T on BLAS")
    assert sum(calls) == 301, "RNNKIT_GEMM_ROWS=0: BLAS only"


def test_whether_the_micro_kernel_pays_for_thin_products_is_measured(monkeypatch):
    monkeypatch.delenv("RNNKIT_GEMM_ROWS", raising=False)
    big_gemm._measured_pays.cache_clear()
    seen = []
    monkeypatch.setattr(gemm_rows, "time_rows", lambda *a, **k: (seen.append((a, k)), {0: 1.0, PACKED: 0.5})[1])
    assert big_gemm.micro_pays("float32") and big_gemm.micro_pays("float32")
    assert len(seen) == 1 and seen[0][0][:3] == (256, big_gemm.MICRO_MAX_K, 512), "once per process, a thin shape"
    monkeypatch.setattr(gemm_rows, "time_rows", lambda *a, **k: {0: 1.0, PACKED: 0.99})
    assert not big_gemm.micro_pays("float64"), "no gain beyond the noise margin: BLAS"
    big_gemm._measured_pays.cache_clear()


@pytest.mark.parametrize("cores", [1, 2, 3])
def test_big_gemm_split_over_threads_equals_numpy(monkeypatch, cores):
    monkeypatch.setattr(big_gemm, "MIN_SPLIT", 0)  # split these small products too
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((300, 90)), rng.standard_normal((90, 130))
    with use_cores(cores):
        np.testing.assert_allclose(big_gemm.dot(a, b, cores=cores), a @ b, rtol=1e-13, atol=1e-12, err_msg="a @ b")
        x, d = rng.standard_normal((400, 70)), rng.standard_normal((400, 90))
        np.testing.assert_allclose(big_gemm.dot_t(x, d), d.T @ x, rtol=1e-13, atol=1e-12, err_msg="dW = d^T x")
        out = np.empty((300, 130))
        assert big_gemm.dot(a, b, out=out, cores=cores) is out
        strided = rng.standard_normal((90, 300)).T  # a transposed (F-ordered) operand
        np.testing.assert_allclose(big_gemm.dot(strided, b), strided @ b, rtol=1e-13, atol=1e-12, err_msg="a.T @ b")


def test_the_transpose_copy_is_made_only_where_a_block_reads_it(monkeypatch):
    """RNN (T, B, I, H) = (3, 16, 8, 300): 16 x 300 x 300 multiply-adds a step, above SMALL_GEMM, so the
    forward reads W_hh.T as a view (no copy); blocks of 4 rows read the copy.  Both compute the same."""
    from rnnkit.engine.gemm_rows import needs_wt
    W = np.zeros((300, 300))
    assert not needs_wt(16, 0, W, backward=False) and needs_wt(16, 4, W, backward=False)
    assert needs_wt(16, 0, W, backward=True) and not needs_wt(16, 4, W, backward=True)
    x = np.random.default_rng(4).standard_normal((3, 16, 8))
    outs = []
    for rows in ("0", "4"):
        monkeypatch.setenv("RNNKIT_GEMM_ROWS", rows)
        layer = rnnkit.RNN(8, 300, dtype=np.float64, seed=5)
        out, _ = layer.forward(x)
        d_x, _ = layer.backward(np.sin(out))
        outs.append((out, d_x))
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=0, atol=1e-13, err_msg="out")
    np.testing.assert_allclose(outs[1][1], outs[0][1], rtol=0, atol=1e-13, err_msg="d_x")


@pytest.mark.parametrize("make", [
    lambda: rnnkit.LSTM(5, 12, num_layers=2, bidirectional=True, dtype=np.float64, seed=3, peephole=True),
    lambda: rnnkit.LSTM(5, 12, dtype=np.float64, seed=3, proj_size=7),
    lambda: rnnkit.LayerNormLSTM(5, 12, dtype=np.float64, seed=3),
    lambda: rnnkit.GRU(5, 12, dtype=np.float64, seed=3, linear_before_reset=False),
    lambda: rnnkit.RNN(5, 12, dtype=np.float64, seed=3, nonlinearity="relu"),
], ids=["peephole-bi", "proj", "layernorm", "gru-reset-before", "rnn-relu"])
def test_every_cell_variant_computes_the_same_on_the_micro_kernel(monkeypatch, make):
    x = np.random.default_rng(1).standard_normal((6, 19, 5))
    lengths = np.array([6, 3, 5] + [6] * 16)
    results = []
    for rows in ("0", "packed"):
        monkeypatch.setenv("RNNKIT_GEMM_ROWS", rows)
        layer = make()
        out, _ = layer.forward(x, lengths=lengths)
        d_x, _ = layer.backward(np.cos(out))
        results.append((out, d_x, {k: g.copy() for k, g in layer.grads.items()}))
    (out0, dx0, g0), (out1, dx1, g1) = results
    np.testing.assert_allclose(out1, out0, rtol=0, atol=1e-13, err_msg="out")
    np.testing.assert_allclose(dx1, dx0, rtol=0, atol=1e-13, err_msg="d_x")
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=0, atol=1e-12, err_msg=f"grad {k}")


def test_shards_of_few_rows_pay_only_on_the_micro_kernel():
    from rnnkit.engine import threads
    assert threads.plan(20, 650, 2600, 1, 4, 2).shards == ((0, 20),)  # BLAS's per-step GEMM: one recurrence
    assert threads.plan(20, 650, 2600, 1, 4, 2, lambda rows: True).shards == ((0, 10), (10, 20))
    assert threads.plan(20, 650, 2600, 1, 4, 2, lambda rows: False).shards == ((0, 20),)
    assert threads.plan(12, 300, 1200, 1, 4, 2, lambda rows: True).shards == ((0, 12),), "6-row shards: below a tile"
    # W_hh of 2 MB or more: shards from 2 rows on the micro-kernel (packed once; one BLAS call repacks it every step)
    assert threads.plan(12, 650, 2600, 1, 4, 2, lambda rows: True).shards == ((0, 6), (6, 12))
    assert threads.plan(4, 512, 2048, 1, 4, 2, lambda rows: True).shards == ((0, 2), (2, 4))
    assert threads.plan(4, 512, 2048, 1, 4, 2, lambda rows: False).shards == ((0, 4),), "on BLAS: one recurrence"
    assert threads.plan(2, 512, 2048, 1, 4, 2, lambda rows: True).shards == ((0, 2),), "one-row shards: GEMVs"


def test_two_rows_are_measured_not_left_to_one_sgemm_call(monkeypatch):
    """One OpenBLAS sgemm call of two rows packs all of W at every step ((2 x 512) @ (512 x 2048): 376 us against
    the micro-kernel's 49, session 16): two rows are timed like more; one row stays one call (a GEMV)."""
    monkeypatch.delenv("RNNKIT_GEMM_ROWS", raising=False)
    asked = []
    monkeypatch.setattr(gemm_rows, "timings", lambda *args: asked.append(args[0]) or {0: 1.0, gemm_rows.PACKED: 0.2})
    assert gemm_rows.step_gemm_rows(2, 512, 2048, np.float32, False) == gemm_rows.PACKED
    assert gemm_rows.step_gemm_rows(1, 512, 2048, np.float32, False) == 0
    assert gemm_rows.step_gemm_rows(2, 64, 256, np.float32, False) == 0, "below MIN_TWO_ROW_MACS: one call"
    assert asked == [2], asked
