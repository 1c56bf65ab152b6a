"""Length filters report what they drop; buckets cover every example once; padded teacher-forcing batches."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data.batching import bucket_batches, filter_lengths, pad_time_major, seq2seq_batch
from rnnkit.data.vocab import BOS, EOS, PAD


def test_filter_counts_each_reason_once():
    src = np.array([3, 0, 9, 4, 0, 12, 5, 2])
    tgt = np.array([2, 5, 3, 0, 0, 20, 11, 2])
    keep, r = filter_lengths(src, tgt, max_src=8, max_tgt=10)
    assert keep.tolist() == [0, 7]
    # pair 4 (both empty) counts as empty source; pair 5 (both long) as long source
    assert (r.total, r.kept, r.empty_src, r.empty_tgt, r.long_src, r.long_tgt) == (8, 2, 2, 1, 2, 1)
    assert r.dropped == 6
    assert str(r) == ("kept 2 of 8 pairs; dropped 6: 2 empty source, 1 empty target, "
                      "2 source longer than 8 tokens, 1 target longer than 10 tokens")
    keep, r = filter_lengths(src, tgt)
    assert keep.tolist() == [0, 2, 5, 6, 7] and (r.long_src, r.long_tgt) == (0, 0)
    assert str(filter_lengths([1, 2], [3, 4])[1]) == "kept 2 of 2 pairs"
    with pytest.raises(ValueError, match="max_src: expected a positive integer or None, got 0"):
        filter_lengths(src, tgt, max_src=0)
    with pytest.raises(ValueError, match="expected the same number of pairs, got 8 and 2"):
        filter_lengths(src, tgt[:2])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=300), st.integers(1, 17), st.integers(1, 5),
       st.integers(0, 2**32 - 1))
def test_buckets_cover_every_index_once_sorted_within_pools(lengths, batch, pool, seed):
    lengths = np.array(lengths)
    batches = bucket_batches(lengths, batch, np.random.default_rng(seed), pool=pool)
    flat = np.concatenate(batches)
    assert np.array_equal(np.sort(flat), np.arange(lengths.size)), "not every example exactly once"
    assert all(1 <= b.size <= batch for b in batches)
    assert all(np.all(np.diff(lengths[b]) >= 0) for b in batches), "lengths not sorted within a bucket"
    again = bucket_batches(lengths, batch, np.random.default_rng(seed), pool=pool)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again)), "same seed, different batches"
    ev = bucket_batches(lengths, batch)
    assert np.array_equal(np.concatenate(ev), np.argsort(lengths, kind="stable"))


def test_buckets_reduce_padding_and_shuffle():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, 5000)
    batches = bucket_batches(lengths, 32, np.random.default_rng(1))
    padded = sum(b.size * lengths[b].max() for b in batches)
    naive = sum(32 * lengths[k:k + 32].max() for k in range(0, 5000, 32))
    assert padded < 0.6 * naive, f"bucketing padded {padded} tokens vs {naive} unbucketed"
    firsts = [lengths[b].min() for b in batches[:20]]
    assert not np.all(np.diff(firsts) >= 0), "batch order is not shuffled"
    other = bucket_batches(lengths, 32, np.random.default_rng(2))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        bucket_batches(lengths, 0)
    with pytest.raises(TypeError, match="rng: expected a numpy.random.Generator"):
        bucket_batches(lengths, 4, rng=0)


def test_pad_time_major():
    ids, lengths = pad_time_major([np.array([5, 6, 7]), np.array([8])])
    assert ids.tolist() == [[5, 8], [6, PAD], [7, PAD]] and lengths.tolist() == [3, 1]
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    with pytest.raises(ValueError, match=r"seqs\[1\]: empty sequence"):
        pad_time_major([np.array([5]), np.array([], dtype=np.int64)])


def test_seq2seq_batch_teacher_forcing_layout():
    b = seq2seq_batch([[4, 5, 6], [7]], [[8, 9], [10, 11, 12]])
    assert b.src.tolist() == [[4, 7], [5, PAD], [6, PAD]] and b.src_lengths.tolist() == [3, 1]
    assert b.tgt_in.T.tolist() == [[BOS, 8, 9, PAD], [BOS, 10, 11, 12]]
    assert b.tgt_out.T.tolist() == [[8, 9, EOS, PAD], [10, 11, 12, EOS]]
    assert b.tgt_mask.T.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert b.tgt_lengths.tolist() == [3, 4] and b.tgt_mask.dtype == bool
    assert np.array_equal(b.tgt_in[1:], np.where(b.tgt_mask[1:], b.tgt_out[:-1], PAD)), "input is not output shifted"
    with pytest.raises(ValueError, match="same batch size, got 2 and 1"):
        seq2seq_batch([[4], [5]], [[6]])
