"""The per-step recurrent GEMM of the time loops: BLAS (whole or in row blocks), or rnnkit's own
micro-kernel on W_hh packed once per call.

* :func:`times_wt` (forward, hw = h @ W_hh.T) and :func:`times_w` (backward, dh = d_hw @ W_hh) take
  ``rows``, the choice of :mod:`rnnkit.engine.gemm_rows`: 0 the whole product in one BLAS call, n > 0
  BLAS in blocks of n rows, :data:`PACKED` the micro-kernel below.
* The micro-kernel.  The loops multiply the same W_hh at every step, while OpenBLAS copies ("packs")
  both operands into its own layout at every call and runs products of at most 100^3 multiply-adds
  with a separate small-matrix kernel.  Here the GEMM's right operand B (K, N) (W_hh.T forward, W_hh
  backward) is packed once per call of the loops (W_hh changes between calls) by :func:`pack` into
  panels of ``NB`` = two SIMD vectors of columns (32 float32 or 16 float64: 2 x 64 bytes),
  ``Bp[p K + k, j] = B[k, p NB + j]``, zero past column N.  A tile of MR rows x NB columns of C keeps
  its 2 MR accumulators in vector registers for all K: at each k it loads the panel's two vectors,
  broadcasts MR elements of A and issues 2 MR fused multiply-adds (LLVM vector code written by
  :func:`_tile`; a numba intrinsic, as numba has no vector types).  Rows go in tiles of 8, then 4,
  2, 1; a last, partial panel through a scratch tile.
* Numbers: every C element is the sum over k in k order, one fused multiply-add per k, as BLAS's FMA
  kernels do (float64 results equal NumPy's to 1e-13, tested).
* Measured (2-core Intel Xeon, AVX-512, one thread, issue 19): (16 x 128) @ (128 x 512) in 13.3 us
  against OpenBLAS's 29.4 (17.8 in 8-row blocks); (32 x 128) @ (128 x 512) 25.5 against 46.6 (MKL
  inside PyTorch: 29); (16 x 512) @ (512 x 128) 13.1 against 32.1; (32 x 512) @ (512 x 2048) 498
  against 1,220.  Whether it wins on another CPU is measured there (:mod:`rnnkit.engine.gemm_rows`):
  on a CPU without 64-byte vectors LLVM splits each vector in two and the tile may spill registers.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from rnnkit.kernels import copy_row, jit, rowjit

PACKED = -1
"""``rows`` value that selects the micro-kernel (the loops' second operand is then the packed B)."""
UNROLL = 4
"""Values of k per pass of a tile's main loop (then one per pass for the last K mod UNROLL): one k per pass
spent more instructions on the rows' addresses than on the 16 fused multiply-adds (front-end bound, about 86 %
of the FMA rate on an AVX-512 Xeon)."""
VECTOR_BYTES = 64
"""Bytes per SIMD vector in the tiles (AVX-512's; LLVM splits them where the CPU's are narrower)."""
SMALL_GEMM = 1_000_000
"""Multiply-adds (M N K) up to which OpenBLAS runs a GEMM with its small-matrix kernels, which
need the other operand order: then ``h @ W.T`` is up to 3x faster from a contiguous copy of
W.T and ``d @ W`` from W itself; above, the opposite orders are 10-20% faster (measured with
one thread, B x H x G from 8 x 64 x 256 to 128 x 512 x 2048)."""


def panel_width(dtype) -> int:
    """Columns per packed panel: two vectors of ``dtype`` (32 float32, 16 float64)."""
    return 2 * VECTOR_BYTES // np.dtype(dtype).itemsize


def packed_shape(K: int, N: int, dtype) -> tuple:
    """Shape of :func:`pack`'s output for B (K, N): (panels * K, NB)."""
    nb = panel_width(dtype)
    return (-(-N // nb) * K, nb)


def pack(B, Bp, cols):
    """Bp[p K + k, j] = B[k, c(p NB + j)] (0 past the last column), c(n) = cols[n] (a gather of B's columns, N of
    them: the rows of W that a unit shard multiplies, :mod:`rnnkit.engine.unit_shards`) or n if cols has size 0;
    B (K, any) any strides, Bp (P K, NB).  Where k runs along memory (B = W.T, the forward's operand) and Bp is
    C-contiguous, :func:`_pack_blocks` (blocks transposed in registers); else :func:`_pack_elements`.  Two compiled
    functions, not one with both loops: the backward's W would compile the blocks it never runs (0.3 s of a cold
    ``rnnkit demo``)."""
    nb = Bp.shape[1]
    blocks = (B.shape[0] >= nb // 2 and B.strides[0] == B.itemsize and B.strides[1] > 0
              and Bp.strides == (nb * Bp.itemsize, Bp.itemsize))
    (_pack_blocks if blocks else _pack_elements)(B, Bp, cols)


@jit
def _pack_elements(B, Bp, cols):
    """:func:`pack` element by element, k outermost (B's rows one after another: a copy's speed where n runs along
    memory, as in the backward's W)."""
    K = B.shape[0]
    gather = cols.shape[0] > 0  # two loops: an index read in the plain one made it 1.8x slower
    N, nb = cols.shape[0] if gather else B.shape[1], Bp.shape[1]
    for p in range(Bp.shape[0] // K if K else 0):
        _pack_rows(B, Bp, cols, gather, N, nb, p, K, 0, K)


@rowjit
def _pack_rows(B, Bp, cols, gather, N, nb, p, K, k0, k1):
    """Rows k0:k1 of panel p of :func:`pack`, element by element."""
    for k in range(k0, k1):
        for j in range(nb):
            n = p * nb + j
            if gather:
                Bp[p * K + k, j] = B[k, cols[n]] if n < N else 0
            else:
                Bp[p * K + k, j] = B[k, n] if n < N else 0


@jit
def _pack_blocks(B, Bp, cols):
    """:func:`pack` for B whose k runs along memory (unit stride, K >= L) into a C-contiguous Bp: full panels in
    blocks of L x L elements transposed in registers (:func:`_transpose`, L = NB / 2, one vector), the last K mod L
    rows and a partial last panel element by element.  The element loop read B's columns L elements apart, 4x
    slower than a copy at (2600, 650) (issue 19, session 15)."""
    K = B.shape[0]
    gather = cols.shape[0] > 0
    N, nb = cols.shape[0] if gather else B.shape[1], Bp.shape[1]
    L = nb // 2
    offsets = np.empty(N, np.intp)  # element offset of B's column c(n) from B's first element
    for n in range(N):
        offsets[n] = (cols[n] if gather else n) * (B.strides[1] // B.itemsize)
    for p in range(Bp.shape[0] // K):
        k_done = K - K % L if (p + 1) * nb <= N else 0  # k below it: in blocks (full panels only)
        for j0 in range(0, nb, L):
            for k0 in range(0, k_done, L):
                _transpose(Bp, (p * K + k0) * nb + j0, nb, B, offsets, p * nb + j0, k0)
        _pack_rows(B, Bp, cols, gather, N, nb, p, K, k_done, K)


@intrinsic
def _transpose(typingctx, D, d0, ldd, S, offsets, o0, k0):
    """D[d0 + k ldd + i] = S[offsets[o0 + i] + k0 + k] for i, k < L, L = 64 bytes of the dtype (16 float32, 8
    float64): L rows of S, L contiguous elements each, written as L rows of D.  Loaded as L vectors, transposed
    by log2 L rounds of two-vector shuffles (a perfect shuffle: row 2i, 2i+1 <- the low, high halves of rows i
    and i + L/2 interleaved), stored as L vectors."""
    if not all(isinstance(t, types.Array) and t.dtype in (types.float32, types.float64) for t in (D, S)):
        return None
    if D.dtype != S.dtype or not (isinstance(offsets, types.Array) and offsets.dtype == types.intp):
        return None
    sig = types.void(D, types.intp, types.intp, S, offsets, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        Da, d0, ldd, Sa, Oa, o0, k0 = args
        ft = context.get_value_type(signature.args[0].dtype)
        lanes = VECTOR_BYTES // (4 if ft == ir.FloatType() else 8)
        vt, i32 = ir.VectorType(ft, lanes), ir.IntType(32)

        def data(k, value):
            return context.make_array(signature.args[k])(context, builder, value).data

        dp, sp, op = data(0, Da), data(3, Sa), data(4, Oa)
        rows = []
        for i in range(lanes):
            start = builder.add(builder.load(builder.gep(op, [builder.add(o0, ir.Constant(o0.type, i))])), k0)
            rows.append(builder.load(builder.bitcast(builder.gep(sp, [start]), vt.as_pointer()), align=4))
        half = lanes // 2
        low = ir.Constant(ir.VectorType(i32, lanes), [x for t in range(half) for x in (t, lanes + t)])
        high = ir.Constant(ir.VectorType(i32, lanes), [x for t in range(half, lanes) for x in (t, lanes + t)])
        for _ in range(lanes.bit_length() - 1):
            rows = [v for i in range(half) for v in (builder.shuffle_vector(rows[i], rows[i + half], low),
                                                      builder.shuffle_vector(rows[i], rows[i + half], high))]
        for k in range(lanes):
            at = builder.add(d0, builder.mul(ir.Constant(d0.type, k), ldd))
            builder.store(rows[k], builder.bitcast(builder.gep(dp, [at]), vt.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


def _tile(MR: int):
    """The MR x NB tile as a numba intrinsic: C[c0 + i ldc + j] = sum_k A[a0 + i lda + k] Bp[b0 + k NB + j]
    for i < MR, j < NB, k < K (K >= 1); offsets and leading dimensions in elements."""

    @intrinsic
    def tile(typingctx, C, c0, ldc, A, a0, lda, Bp, b0, K):
        if not all(isinstance(t, types.Array) and t.dtype in (types.float32, types.float64) for t in (C, A, Bp)):
            return None
        if not C.dtype == A.dtype == Bp.dtype:
            return None
        sig = types.void(C, types.intp, types.intp, A, types.intp, types.intp, Bp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            Ca, c0, ldc, Aa, a0, lda, Ba, b0, K = args
            ft = context.get_value_type(signature.args[0].dtype)
            lanes = VECTOR_BYTES // (4 if ft == ir.FloatType() else 8)
            vt = ir.VectorType(ft, lanes)
            i64, i32 = ir.IntType(64), ir.IntType(32)

            def base(k, value, off):
                return builder.gep(context.make_array(signature.args[k])(context, builder, value).data, [off])

            cp, ap, bp = base(0, Ca, c0), base(3, Aa, a0), base(6, Ba, b0)
            fname = f"llvm.fma.v{lanes}f{32 if lanes == 16 else 64}"
            fma = builder.module.globals.get(fname) or ir.Function(builder.module, ir.FunctionType(vt, [vt] * 3), fname)
            undef, zeros = ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

            def one_k(k, acc):  # acc[i][j] += A[i, k] * Bp[k, j-th vector]: the accumulators after this k
                panel_row = builder.gep(bp, [builder.mul(k, ir.Constant(i64, 2 * lanes))])
                b = [builder.load(builder.bitcast(builder.gep(panel_row, [ir.Constant(i64, j * lanes)]),
                                                  vt.as_pointer()), align=4) for j in range(2)]
                new = []
                for i in range(MR):
                    a = builder.load(builder.gep(ap, [builder.add(builder.mul(ir.Constant(i64, i), lda), k)]))
                    a = builder.shuffle_vector(builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, zeros)
                    new.append([builder.call(fma, [a, b[j], acc[i][j]]) for j in range(2)])
                return new

            def phis(incoming):  # [(block, accumulators)] -> phi accumulators
                out = [[builder.phi(vt) for _ in range(2)] for _ in range(MR)]
                for block, acc in incoming:
                    for i in range(MR):
                        for j in range(2):
                            out[i][j].add_incoming(acc[i][j], block)
                return out

            entry, zero = builder.block, [[ir.Constant(vt, None)] * 2 for _ in range(MR)]
            zero_k, unrolled = ir.Constant(i64, 0), ir.Constant(i64, UNROLL)
            K_unrolled = builder.sub(K, builder.srem(K, unrolled))
            blocks = [builder.append_basic_block(f"tile.{name}") for name in ("k4", "rest", "k", "done")]
            loop4, rest, loop1, done = blocks
            builder.cbranch(builder.icmp_signed(">", K_unrolled, zero_k), loop4, rest)
            builder.position_at_end(loop4)  # UNROLL values of k per pass: the address arithmetic is shared
            k4 = builder.phi(i64)
            acc4 = phis([(entry, zero)])
            acc = acc4
            for u in range(UNROLL):
                acc = one_k(builder.add(k4, ir.Constant(i64, u)), acc)
            k4_next = builder.add(k4, unrolled)
            k4.add_incoming(zero_k, entry)
            k4.add_incoming(k4_next, loop4)
            for i in range(MR):
                for j in range(2):
                    acc4[i][j].add_incoming(acc[i][j], loop4)
            builder.cbranch(builder.icmp_signed("<", k4_next, K_unrolled), loop4, rest)
            builder.position_at_end(rest)  # the last K mod UNROLL values of k, one per pass
            k_rest = builder.phi(i64)
            k_rest.add_incoming(zero_k, entry)
            k_rest.add_incoming(k4_next, loop4)
            acc_rest = phis([(entry, zero), (loop4, acc)])
            builder.cbranch(builder.icmp_signed("<", k_rest, K), loop1, done)
            builder.position_at_end(loop1)
            k1 = builder.phi(i64)
            acc1 = phis([(rest, acc_rest)])
            new = one_k(k1, acc1)
            k1_next = builder.add(k1, ir.Constant(i64, 1))
            k1.add_incoming(k_rest, rest)
            k1.add_incoming(k1_next, loop1)
            for i in range(MR):
                for j in range(2):
                    acc1[i][j].add_incoming(new[i][j], loop1)
            builder.cbranch(builder.icmp_signed("<", k1_next, K), loop1, done)
            builder.position_at_end(done)
            final = phis([(rest, acc_rest), (loop1, new)])
            for i in range(MR):
                row = builder.gep(cp, [builder.mul(ir.Constant(i64, i), ldc)])
                for j in range(2):
                    builder.store(final[i][j], builder.bitcast(builder.gep(row, [ir.Constant(i64, j * lanes)]),
                                                               vt.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile8, _tile4, _tile2, _tile1 = _tile(8), _tile(4), _tile(2), _tile(1)


@rowjit
def _panel(C, c0, ldc, A, lda, Bp, b0, K, M):
    """Rows 0..M-1 of one panel of C (from C's element c0 on), in tiles of 8, 4, 2, 1 rows."""
    m = 0
    while m + 8 <= M:
        _tile8(C, c0 + m * ldc, ldc, A, m * lda, lda, Bp, b0, K)
        m += 8
    if M - m >= 4:
        _tile4(C, c0 + m * ldc, ldc, A, m * lda, lda, Bp, b0, K)
        m += 4
    if M - m >= 2:
        _tile2(C, c0 + m * ldc, ldc, A, m * lda, lda, Bp, b0, K)
        m += 2
    if M - m >= 1:
        _tile1(C, c0 + m * ldc, ldc, A, m * lda, lda, Bp, b0, K)


@jit
def packed_gemm(A, Bp, C):
    """C = A @ B for A (M, K) and C (M, N) with unit column strides (rows of C-contiguous buffers, as the
    loops pass), B (K, N) packed by :func:`pack`.  A compiled call, not inlined: the loops call it at two or
    more places, and one copy of its tiles per signature compiles instead of one at every place (issue 19: a
    cold ``rnnkit demo`` compiled it four times)."""
    M, K = A.shape
    N = C.shape[1]
    nb = Bp.shape[1]
    if K == 0 or M == 0:
        C[:] = 0
        return
    if A.strides[1] != A.itemsize or C.strides[1] != C.itemsize:
        raise ValueError("packed_gemm: A and C need unit column strides")
    lda, ldc = A.strides[0] // A.itemsize, C.strides[0] // C.itemsize
    full = N // nb
    for p in range(full):
        _panel(C, p * nb, ldc, A, lda, Bp, p * K * nb, K, M)
    if N > full * nb:  # the last, partial panel through a scratch tile
        scratch = np.empty((M, nb), C.dtype)
        _panel(scratch, 0, nb, A, lda, Bp, full * K * nb, K, M)
        for i in range(M):
            copy_row(C[i, full * nb:], scratch[i, : N - full * nb])


@rowjit
def _blas(a, W, WT, out, backward):
    """One BLAS call: out = a @ W.T (forward) or a @ W (backward), W (G, H), from W or its contiguous
    transpose WT, whichever order OpenBLAS runs faster at this size (:data:`SMALL_GEMM`)."""
    small = a.shape[0] * W.shape[0] * W.shape[1] <= SMALL_GEMM
    if backward:
        if small:
            np.dot(a, W, out)
        else:
            np.dot(a, WT.T, out)
    elif small:
        np.dot(a, WT, out)
    else:
        np.dot(a, W.T, out)


@jit
def times(a, W, WT, out, rows, backward):
    """The per-step GEMM of :func:`times_wt` (``backward`` False) or :func:`times_w` (True), and of the timing
    loop of :mod:`rnnkit.engine.gemm_rows`.  A compiled call, not inlined, with ``backward`` a run-time bool: one
    copy per dtype serves every place the loops call it (inlined at each, its BLAS calls took 3-4 s of each
    loop's cold compile; issue 19), and a constant ``backward`` would make numba compile one copy per value."""
    M = a.shape[0]
    if rows < 0:
        packed_gemm(a, WT, out)
    elif rows == 0 or rows >= M:
        _blas(a, W, WT, out, backward)
    else:
        for b in range(0, M, rows):
            e = min(M, b + rows)
            _blas(a[b:e], W, WT, out[b:e], backward)


@rowjit
def times_wt(h, W, WT, out, rows):
    """out = h @ W.T for the recurrent GEMM; W (G, H).  rows 0: one BLAS call; rows > 0: BLAS in blocks of
    that many rows of h, WT W's contiguous transpose (H, G) where a block needs it (:mod:`rnnkit.engine.gemm_rows`);
    rows = PACKED: the micro-kernel, WT then W.T packed (:func:`pack`)."""
    times(h, W, WT, out, rows, rows < PACKED - 1)  # False, typed as a run-time bool (see times)


@rowjit
def times_w(d, W, WT, out, rows):
    """out = d @ W (the recurrent GEMM's backward), from W or WT, as :func:`times_wt` (PACKED: WT is W packed)."""
    times(d, W, WT, out, rows, rows >= PACKED - 1)  # True, typed as a run-time bool (see times)
