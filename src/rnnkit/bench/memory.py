"""Bytes a forward pass keeps for its backward, counted the same way for rnnkit and PyTorch.

rnnkit: the unique base arrays of ``layer.saved_for_backward()``; PyTorch: the unique storages
autograd saves (``torch.autograd.graph.saved_tensors_hooks``).  Parameters and inputs are
excluded on both sides through ``exclude``.
"""
from __future__ import annotations

import numpy as np


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def tape_bytes(obj, exclude=()) -> int:
    """Bytes of the unique base arrays reachable from ``obj`` (tuples, lists, dicts, arrays)."""
    skip = {id(_root(a)) for a in exclude}
    seen, total, stack = set(), 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, np.ndarray):
            r = _root(o)
            if id(r) not in seen and id(r) not in skip:
                seen.add(id(r))
                total += r.nbytes
        elif isinstance(o, (tuple, list)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            stack.extend(vars(o).values())
    return total


def torch_saved_bytes(torch, fn, exclude=()) -> int:
    """Bytes of the unique storages autograd saves while ``fn()`` runs."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    saved = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            saved[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return int(sum(saved.values()))
