"""Tokenisers round-trip (char and BPE exactly, words up to the join rule); vocabularies round-trip via JSON."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data.tokenize import (SPACE_PATTERN, BpeTokenizer, CharTokenizer, WordTokenizer,
                                  tokenizer_from_dict)
from rnnkit.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, TokenVocab
from rnnkit.errors import CheckpointError

LINES = ["Über die Brücke, sagte sie -- \"ja!\"", "Ein Haus; zwei Häuser.", "Привет, мир! 3.14 € :-)",
         "  two  spaces\tand a tab ", "naïve café ﬁ déjà-vu 😀", "It is 5 o'clock."] * 20


def test_char_tokens_exact():
    tok = CharTokenizer()
    for s in LINES[:6] + [""]:
        assert tok.tokenize(s) == list(s) and tok.detokenize(tok.tokenize(s)) == s
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok


def test_word_tokens_by_hand():
    tok = WordTokenizer()
    assert tok.tokenize("Hello, world! It's 5.30 a.m. — naïve café_2") == [
        "Hello", ",", "world", "!", "It", "'", "s", "5", ".", "30", "a", ".", "m", ".", "—", "naïve", "café_2"]
    assert WordTokenizer(lower=True).tokenize("Über ALLES.") == ["über", "alles", "."]
    assert tok.detokenize(["Hello", ",", "world", "!"]) == "Hello , world !"
    space = WordTokenizer(pattern=SPACE_PATTERN)
    assert space.tokenize(" Parliament &apos;s  prerogative .") == ["Parliament", "&apos;s", "prerogative", "."]
    with pytest.raises(ValueError, match="pattern: must not match the empty string"):
        WordTokenizer(pattern=r"\w*")
    with pytest.raises(ValueError, match="pattern: not a valid regular expression"):
        WordTokenizer(pattern="(")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.booleans(), st.sampled_from([None, SPACE_PATTERN]))
def test_word_round_trip_up_to_the_join_rule(s, lower, pattern):
    tok = WordTokenizer(lower=lower) if pattern is None else WordTokenizer(lower=lower, pattern=pattern)
    t = tok.tokenize(s)
    assert all(t) and not any(c.isspace() for w in t for c in w)
    assert tok.tokenize(tok.detokenize(t)) == t
    back = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert back == tok and back.tokenize(s) == t
    norm = tok.detokenize(t)  # already one space between tokens: exact round trip
    assert tok.detokenize(tok.tokenize(norm)) == norm


def test_bpe_trains_on_train_side_round_trips_exactly_and_saves_as_json():
    pytest.importorskip("tokenizers")
    train = LINES[:3] * 30
    a = BpeTokenizer.train(train, vocab_size=300)
    b = BpeTokenizer.train(train, vocab_size=300)
    assert a.model_json == b.model_json, "BPE training is not deterministic"
    assert 256 < a.vocab_size <= 300
    merged = a.tokenize("Über die Brücke")
    assert len(merged) < len("Über die Brücke".encode()), f"no merges learnt: {merged}"
    for s in LINES[:6] + ["", "never seen: ЖΩ漢字 \n\t x"]:
        assert a.detokenize(a.tokenize(s)) == s, f"BPE round trip failed for {s!r}"
    d = json.loads(json.dumps(a.to_dict()))
    c = tokenizer_from_dict(d)
    assert isinstance(c, BpeTokenizer) and c == a
    assert c.tokenize_many(LINES[:6]) == [a.tokenize(s) for s in LINES[:6]]
    with pytest.raises(ValueError, match="vocab_size: expected an integer > 256"):
        BpeTokenizer.train(train, vocab_size=100)
    with pytest.raises(CheckpointError, match="tokenizer \\(bpe\\): BPE model: not a valid tokenizers JSON"):
        tokenizer_from_dict({"kind": "bpe", "model": "{not json"})


def test_tokenizer_from_dict_errors():
    with pytest.raises(CheckpointError, match="kind in"):
        tokenizer_from_dict({"kind": "sentencepiece"})
    with pytest.raises(CheckpointError, match="tokenizer \\(word\\): missing key 'pattern'"):
        tokenizer_from_dict({"kind": "word", "lower": False})
    with pytest.raises(CheckpointError, match="lower must be a bool"):
        tokenizer_from_dict({"kind": "word", "lower": "yes", "pattern": "x"})


def test_vocab_order_min_freq_encode_decode():
    seqs = [["b", "a", "c"], ["a", "b", "d"], ["a", "e", "<unk>"]]
    v = TokenVocab.build(seqs, min_freq=2)
    assert v.tokens == SPECIALS + ("a", "b")  # a: 3, b: 2; c, d, e once; a literal "<unk>" is the special
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3) and v.id("a") == 4 and v.id("zzz") == UNK
    v1 = TokenVocab.build(seqs)
    assert v1.tokens[4:] == ("a", "b", "c", "d", "e")  # frequency, then the token string
    assert TokenVocab.build(seqs, max_size=1).tokens[4:] == ("a",)
    ids = v.encode(["b", "x", "a"], bos=True, eos=True)
    assert ids.dtype == np.int64 and ids.tolist() == [BOS, 5, UNK, 4, EOS]
    assert v.decode(ids) == ["b", "<unk>", "a"]
    assert v.decode([4, EOS, 5, PAD]) == ["a"] and v.decode([4, EOS, 5], strip=False) == ["a", "<eos>", "b"]
    with pytest.raises(ValueError, match="ids: expected token ids in 0..5, got 6"):
        v.decode([4, 6])
    with pytest.raises(ValueError, match="min_freq"):
        TokenVocab.build(seqs, min_freq=0)


def test_vocab_json_round_trip_and_errors():
    v = TokenVocab.build([list("the cat sat on the mat"), list("ÄÖÜ ß")], min_freq=1)
    d = json.loads(json.dumps(v.to_dict()))
    w = TokenVocab.from_dict(d)
    assert w == v and w.tokens == v.tokens and w.min_freq == 1
    assert w.encode(list("tax")).tolist() == v.encode(list("tax")).tolist()
    with pytest.raises(CheckpointError, match="missing key 'tokens'"):
        TokenVocab.from_dict({"specials": list(SPECIALS), "min_freq": 1})
    with pytest.raises(CheckpointError, match="specials must be"):
        TokenVocab.from_dict({**d, "specials": ["<pad>"]})
    with pytest.raises(CheckpointError, match="'a' appears more than once"):
        TokenVocab.from_dict({**d, "tokens": ["a", "b", "a"]})
    with pytest.raises(CheckpointError, match="tokens must be a list of strings"):
        TokenVocab.from_dict({**d, "tokens": [1, 2]})
