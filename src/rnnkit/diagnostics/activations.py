"""What a char-LM computes over a text, for the inspect page (``rnnkit inspect``)."""
from __future__ import annotations

import numpy as np

from rnnkit.errors import UserError
from rnnkit.diagnostics.gates import gate_saturation


def charlm_activations(lm, text: str, layer: int, what: str) -> np.ndarray:
    """(N, W) tanh(c_t) (``what='c'``, LSTM) or h_t of ``layer`` (0-based) after each character (W: the
    field's width, ``cell.field_sizes``: H, or h's proj_size).

    Streams the text one character at a time from a zero state (:meth:`CharLMModel.stream`).
    """
    rnn = lm.model.rnn
    is_lstm = "c" in rnn.cell.State._fields
    if what not in ("c", "h"):
        raise UserError(f"--what: expected c or h, got {what!r}")
    if what == "c" and not is_lstm:
        raise UserError(f"--what c: the checkpoint's cell is {lm.config.cell}, which has no cell state; use --what h")
    if not 0 <= layer < rnn.num_layers:
        raise UserError(f"--layer: expected 1..{rnn.num_layers} (the model has {rnn.num_layers} layers), "
                        f"got {layer + 1}")
    ids = lm.vocab.encode(text, "--text")
    out = np.empty((len(ids), rnn.cell.field_sizes(rnn.hidden_size)[what]))
    for k, (_, state) in enumerate(lm.model.stream(ids)):
        h = state.h if is_lstm else state
        out[k] = np.tanh(state.c[layer, 0]) if what == "c" else h[layer, 0]
    return out


def charlm_gate_saturation(lm, text: str):
    """Gate saturation of a char-LM over ``text`` (one sequence)."""
    ids = lm.vocab.encode(text, "--text")
    rnn = lm.model.rnn
    sat = gate_saturation(rnn, [(lm.model.emb.params["weight"][ids][:, None, :], None)])
    rnn.release()  # inference only: free the tape and buffers
    return sat
