"""The parameter protocol shared by every layer and model.

As in micrograd, ``params`` / ``grads`` / ``zero_grad()`` is the whole
protocol (plus ``train()`` / ``eval()``, the mode the regularisers read).  A leaf keeps its
own arrays in ``self._params`` / ``self._grads``;
a composite exposes its children's arrays under dotted names
(``"lstm.weight_hh_l0"``).  The arrays are the same objects the layers
compute with, so an optimizer that updates ``params[k]`` in place updates
the model.
"""
from __future__ import annotations

import numpy as np


class Module:
    """Base class: leaves fill ``_params``/``_grads``; composites hold Modules as attributes.

    ``training`` (True by default) switches the regularisers (dropout) on; ``train()`` /
    ``eval()`` set it on the module and all its children.
    """

    _params: dict
    _grads: dict
    training: bool = True

    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout on) for this module and its children; returns self."""
        self.training = bool(mode)
        for child in self.children().values():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (no dropout): ``train(False)``; returns self."""
        return self.train(False)

    def children(self) -> dict[str, "Module"]:
        return {k: v for k, v in vars(self).items() if isinstance(v, Module)}

    def _collect(self, attr: str) -> dict[str, np.ndarray]:
        out = dict(getattr(self, attr, {}))
        for name, child in self.children().items():
            for k, v in child._collect(attr).items():
                out[f"{name}.{k}"] = v
        return out

    @property
    def params(self) -> dict[str, np.ndarray]:
        """name -> weight array (updated in place by optimizers)."""
        return self._collect("_params")

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """name -> gradient array, same keys as ``params``; accumulates until zero_grad()."""
        return self._collect("_grads")

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0.0)

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy arrays into this module's parameters (in place), checking names and shapes."""
        own = self.params
        missing = sorted(set(own) - set(params))
        extra = sorted(set(params) - set(own))
        if missing or extra:
            raise ValueError(f"parameter names differ: missing {missing}, unexpected {extra}")
        for k, p in own.items():
            v = np.asarray(params[k])
            if v.shape != p.shape:
                raise ValueError(f"parameter {k!r}: expected shape {p.shape}, got {v.shape}")
            p[...] = v
