"""The callables each side of a speed comparison times, built from the same numpy weights and data.

``BUILDERS[section](lib, *args) -> {name: fn}`` for ``lib`` "torch" or "rnnkit": the two
dictionaries hold callables doing the same work in the two libraries.
"""
from __future__ import annotations

import numpy as np

from rnnkit.io.torch_interop import torch_classes
from rnnkit.engine.layer_types import LAYERS
from rnnkit.engine.threads import blas_threads
from rnnkit.nn.losses import softmax_cross_entropy
from rnnkit.nn.optim import Adam
from rnnkit.models.charlm import CharLMModel
from rnnkit.tasks.charlm import CharLMConfig


def torch_class(torch, kind):
    """torch.nn.LSTM/GRU/RNN for a cell name."""
    return torch_classes(torch)[LAYERS[kind]]


def torch_module(torch, kind, I, H, layers, weights):
    tm = torch_class(torch, kind)(I, H, num_layers=layers)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return tm


def kit_layer(kind, I, H, layers, weights):
    layer = LAYERS[kind](I, H, layers, seed=0)
    layer.load_params(weights)
    return layer


def _grid_fns(lib, kind, I, H, weights, x_np):
    """{"train": fwd+bwd with loss = sum of outputs, "infer": forward only} for one library."""
    T, B, _ = x_np.shape
    if lib == "torch":
        import torch

        tm = torch_module(torch, kind, I, H, 1, weights)
        x = torch.from_numpy(x_np.copy()).requires_grad_(True)

        def train():
            out, _ = tm(x)
            out.sum().backward()

        def infer():
            with torch.inference_mode():
                tm(x)

        return {"train": train, "infer": infer}
    layer = kit_layer(kind, I, H, 1, weights)
    ones = np.ones((T, B, H), dtype=np.float32)

    def kit_train():
        layer.forward(x_np)
        layer.backward(ones)

    return {"train": kit_train, "infer": lambda: layer.forward(x_np, need_backward=False)}  # as inference_mode


def _stream_fns(lib, kind, I, H, weights, xs):
    """{"stream": len(xs) single steps at B = 1, state carried} for one library."""
    if lib == "torch":
        import torch

        tm = torch_module(torch, kind, I, H, 1, weights)
        xs_t = torch.from_numpy(xs.copy())[:, None]  # (steps, 1, 1, I)

        def torch_stream():
            st = None
            with torch.inference_mode():
                for x in xs_t:
                    y, st = tm(x, st)

        return {"stream": torch_stream}
    layer = kit_layer(kind, I, H, 1, weights)

    def kit_stream():
        st = None
        for x in xs:
            y, st = layer.step(x, st)

    return {"stream": kit_stream}


def _charlm_fns(lib, spec, weights, ids, tgt):
    """{"step": one training step of the char-LM (forward, loss, backward, Adam)} for one library, each as its
    training loop runs it: rnnkit's with BLAS itself on one thread, as ``rnnkit train`` holds it (its own
    threads split the work; OpenBLAS's idle threads would spin on their cores: this step took 48-53 ms with
    BLAS on its default 2 threads against 32-34 with one, 2-core Intel Xeon, issue 19)."""
    V, E, H, layers, lr = spec["V"], spec["E"], spec["H"], spec["layers"], spec["lr"]
    if lib == "torch":
        import torch

        nn = torch.nn

        class TorchLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb, self.rnn, self.head = nn.Embedding(V, E), nn.LSTM(E, H, layers), nn.Linear(H, V)

            def forward(self, ids, st):
                h, st = self.rnn(self.emb(ids), st)
                return self.head(h), st

        tlm = TorchLM()
        tlm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        ids_t, tgt_t = torch.from_numpy(ids), torch.from_numpy(tgt).reshape(-1)
        topt = torch.optim.Adam(tlm.parameters(), lr=lr)
        carry = [None]

        def torch_step():
            topt.zero_grad()
            logits, st = tlm(ids_t, carry[0])
            loss = nn.functional.cross_entropy(logits.reshape(-1, V), tgt_t)
            loss.backward()
            topt.step()
            carry[0] = tuple(s.detach() for s in st)
            return loss.item()

        return {"step": torch_step}
    klm = CharLMModel(V, CharLMConfig(cell="lstm", layers=layers, hidden=H, emb=E))  # the char-LM task's model
    klm.load_params(weights)
    kopt = Adam(klm.params, klm.grads, lr=lr)
    carry = [None]

    def kit_step():
        with blas_threads(1):  # as rnnkit's trainer runs every step (rnnkit.train.trainer, issue 19)
            klm.zero_grad()
            logits, st = klm(ids, carry[0])
            loss, d_logits = softmax_cross_entropy(logits, tgt)
            klm.backward(d_logits)
            kopt.step()
        carry[0] = st
        return loss

    return {"step": kit_step}


BUILDERS = {"grid": _grid_fns, "stream": _stream_fns, "charlm": _charlm_fns}
