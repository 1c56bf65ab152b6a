"""Building blocks around the recurrent layers: Embedding, Linear, Sigmoid.

Each has forward (caching what backward needs) and a hand-written backward
that adds into ``grads``.  Shapes use ``...`` for any leading (time, batch) dims.
"""
from __future__ import annotations

import numpy as np

from rnnkit.checks.arrays import check_array
from rnnkit.cells.protocol import sigmoid
from rnnkit.engine import big_gemm
from rnnkit.engine.dropout import DropoutRates, bernoulli_mask
from rnnkit.engine.recurrent import as_rng
from rnnkit.engine.rows import Rows
from rnnkit.module import Module


class Linear(Module):
    """y = x @ W.T + b, applied at every time step.  x: (..., in) -> y: (..., out).

    With the seed's output head: o_t = sigma(W_o h_t + b_o) is ``Sigmoid()(Linear(H, K)(h))``.
    Init: U(-1/sqrt(in), 1/sqrt(in)) as torch.nn.Linear.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32, seed=None):
        rng = as_rng(seed)
        k = 1.0 / np.sqrt(in_features)
        self.in_features, self.out_features, self.dtype = in_features, out_features, np.dtype(dtype)
        self._params = {"weight": rng.uniform(-k, k, (out_features, in_features)).astype(dtype)}
        if bias:
            self._params["bias"] = rng.uniform(-k, k, out_features).astype(dtype)
        self._grads = {k: np.zeros_like(v) for k, v in self._params.items()}
        self._x = None

    def forward(self, x):
        check_array("x", x, (None,) * (x.ndim - 1) + (self.in_features,) if isinstance(x, np.ndarray) else (None,),
                    self.dtype, finite=False)
        self._x = x
        y = big_gemm.dot(x.reshape(-1, self.in_features), self._params["weight"].T).reshape(x.shape[:-1] + (-1,))
        if "bias" in self._params:
            y += self._params["bias"]
        return y

    __call__ = forward

    def release(self) -> None:
        """Drop the input kept for backward (inference only; backward then needs a new forward)."""
        self._x = None

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError("Linear.backward: called before forward or twice for one forward")
        x, self._x = self._x, None
        x2, dy2 = x.reshape(-1, self.in_features), dy.reshape(-1, self.out_features)
        big_gemm.add_t(self._grads["weight"], x2, dy2)  # dL/dW += sum_t dy_t^T x_t
        if "bias" in self._params:
            self._grads["bias"] += dy2.sum(axis=0)  # dL/db = sum_t dy_t
        return big_gemm.dot(dy2, self._params["weight"]).reshape(dy.shape[:-1] + (-1,))  # dL/dx = dy W


class Embedding(Module):
    """Lookup table: ids (...) integer -> (..., dim).  Init N(0, 1) as torch.nn.Embedding.

    ``dropout=p``: embedding dropout (Merity et al. 2018), in training mode only: each forward
    drops whole rows of the table, m = Bernoulli(1 - p) / (1 - p) of shape (num_embeddings,)
    drawn from ``forward(ids, rng=)``; y = W[ids] * m[ids] (a dropped word is dropped at every
    position), dW[k] += m[k] * (sum of dy over positions with id k).

    ``lookup(ids, rng=None)``: the same rows, not formed, as a :class:`rnnkit.engine.rows.Rows`
    (table W, or W * m[:, None] with dropout; ids) for a recurrent layer, which projects the
    table instead of the rows when that is cheaper; ``backward`` then takes dL/d table (V, dim)
    (the layer's d_x): dW += d_table * m[:, None].
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32, seed=None, dropout: float = 0.0):
        rng = as_rng(seed)
        self.num_embeddings, self.embedding_dim, self.dtype = num_embeddings, embedding_dim, np.dtype(dtype)
        self.dropout = DropoutRates(dropout=dropout).dropout
        self._params = {"weight": rng.standard_normal((num_embeddings, embedding_dim)).astype(dtype)}
        self._grads = {"weight": np.zeros_like(self._params["weight"])}
        self._ids = None
        self._row_mask = None
        self._rows = False  # the last forward was lookup: backward takes dL/d table

    def forward(self, ids, rng=None):
        """x = W[ids] (* m[ids] with dropout): ids (...) -> (..., dim)."""
        table = self._table(ids, rng)
        return table[self._ids]

    __call__ = forward

    def lookup(self, ids, rng=None) -> Rows:
        """Rows(table, ids) standing for ``forward(ids, rng)`` (see the class docstring)."""
        table = self._table(ids, rng)
        self._rows = True
        return Rows(table, self._ids)

    def _table(self, ids, rng):
        """Check ids (kept for backward), draw this forward's row mask; the table the rows come from."""
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer token ids, got dtype {ids.dtype.name}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"ids: every id must be in 0..{self.num_embeddings - 1}, got range "
                             f"{int(ids.min())}..{int(ids.max())}")
        self._ids, self._rows = ids, False
        self._row_mask = None
        if self.training and self.dropout > 0:
            if not isinstance(rng, np.random.Generator):
                raise TypeError(f"rng: embedding dropout in training needs forward(ids, rng=np.random.Generator) "
                                f"(or eval()), got {type(rng).__name__}")
            self._row_mask = bernoulli_mask(rng, self.dropout, (self.num_embeddings,), self.dtype)
            return self._params["weight"] * self._row_mask[:, None]
        return self._params["weight"]

    @property
    def row_mask(self):
        """The last training forward's row mask (num_embeddings,), or None."""
        return self._row_mask

    def backward(self, dy):
        if self._ids is None:
            raise RuntimeError("Embedding.backward: called before forward or twice for one forward")
        ids, self._ids = self._ids, None
        if self._rows:  # dy = dL/d table (V, dim)
            check_array("d_table", dy, (self.num_embeddings, self.embedding_dim), self.dtype, finite=False)
            self._grads["weight"] += dy if self._row_mask is None else dy * self._row_mask[:, None]
            return None
        if self._row_mask is not None:  # y = W[ids] * m[ids]
            dy = dy * self._row_mask[ids][..., None]
        # dL/dW[k] = sum of dy over positions whose id is k
        np.add.at(self._grads["weight"], ids.reshape(-1), dy.reshape(-1, self.embedding_dim))
        return None


class Sigmoid(Module):
    """o = sigma(a), elementwise; backward uses the cached output: do/da = o (1 - o)."""

    def __init__(self):
        self._params, self._grads, self._o = {}, {}, None

    def forward(self, a):
        self._o = sigmoid(np.asarray(a))
        return self._o

    __call__ = forward

    def backward(self, do):
        if self._o is None:
            raise RuntimeError("Sigmoid.backward: called before forward or twice for one forward")
        o, self._o = self._o, None
        return do * o * (1.0 - o)  # sigma' = o(1-o)
