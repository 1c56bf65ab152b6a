"""Extended-vocabulary ids for copying (the pointer-generator, rnnkit.models.pointer).

For one document with source tokens x_1..x_n and summary tokens y_1..y_m over a vocabulary of
V ids: the source words outside the vocabulary, in order of first appearance, get the temporary
ids V, V+1, ... (``oovs[k]`` is the word of id V + k); a summary word outside the vocabulary
gets its source's temporary id if the source has it (it can be copied), else <unk>.  The ids
are per document: the model reads id V + k of row b as row b's k-th OOV.
"""
from __future__ import annotations

import numpy as np

from rnnkit.data.vocab import UNK, TokenVocab


def extend_ids(vocab: TokenVocab, src_tokens, tgt_tokens=()) -> tuple:
    """-> (source ids (n,), summary ids (m,), oovs: the source's OOV words, id V + k for oovs[k])."""
    V, oovs, index = len(vocab), [], {}
    src = []
    for w in src_tokens:
        i = vocab.id(w)
        if i == UNK and w not in vocab:
            if w not in index:
                index[w] = V + len(oovs)
                oovs.append(w)
            i = index[w]
        src.append(i)
    tgt = [vocab.id(w) if w in vocab else index.get(w, UNK) for w in tgt_tokens]
    return np.array(src, dtype=np.int64), np.array(tgt, dtype=np.int64), oovs


def extended_tokens(vocab: TokenVocab, ids, oovs) -> list:
    """Ids (stopping at <eos>, without <pad>/<bos>) -> tokens, id V + k written as ``oovs[k]``."""
    V, out = len(vocab), []
    for i in np.asarray(ids).reshape(-1).tolist():
        if i == vocab.EOS:
            break
        if i in (vocab.PAD, vocab.BOS):
            continue
        out.append(oovs[i - V] if i >= V else vocab.tokens[i])
    return out
