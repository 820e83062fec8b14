"""course_lib.data: synthetic tasks, the shipped corpus, the character vocabulary."""

import numpy as np
import pytest

from course_lib import data


def test_adding_problem():
    xs, targets = data.adding_problem(T=20, batch=50, seed=3)
    assert xs.shape == (20, 50, 2) and targets.shape == (50, 1)
    markers = xs[:, :, 1]
    np.testing.assert_array_equal(markers.sum(axis=0), 2.0)
    assert np.all(markers[:10].sum(axis=0) == 1) and np.all(markers[10:].sum(axis=0) == 1)
    np.testing.assert_allclose(targets[:, 0], (xs[:, :, 0] * markers).sum(axis=0))
    again, _ = data.adding_problem(T=20, batch=50, seed=3)
    assert np.array_equal(xs, again)


def test_delayed_copy():
    xs, targets = data.delayed_copy(T=12, delay=3, batch=5, vocab_size=4, seed=1)
    assert xs.shape == (12, 5, 4) and targets.shape == (12, 5)
    assert np.issubdtype(targets.dtype, np.integer)
    symbols = xs.argmax(axis=-1)
    np.testing.assert_array_equal(xs.sum(axis=-1), 1.0)
    assert np.all(symbols >= 1)
    np.testing.assert_array_equal(targets[3:], symbols[:-3])
    np.testing.assert_array_equal(targets[:3], 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(T=5, delay=5, batch=2, vocab_size=3), r"delay must lie in \[0, 4\], got 5"),
    (dict(T=5, delay=1, batch=2, vocab_size=1), r"vocab_size must lie in \[2, 100000\], got 1"),
])
def test_delayed_copy_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.delayed_copy(**kwargs)


def test_corpus_is_shipped_and_small():
    text = data.load_corpus()
    assert 10_000 < len(text.encode("utf-8")) < 60_000
    assert text.isascii() and "THE TORTOISE AND THE HARE" in text
    with pytest.raises(ValueError, match="unknown corpus 'shakespeare': choose one of 'fables'"):
        data.load_corpus("shakespeare")


def test_vocab_round_trip_and_unknown_characters():
    text = data.load_corpus()
    vocab = data.CharVocab(text)
    ids = data.encode(text[:500], vocab)
    assert ids.dtype == np.int64 and ids.max() < vocab.size
    assert data.decode(ids, vocab) == text[:500]
    with pytest.raises(ValueError, match=r"characters not in the vocabulary: \['~'\]"):
        vocab.encode("a~")


def test_batchify():
    streams = data.batchify(np.arange(10), 3)
    np.testing.assert_array_equal(streams, [[0, 3, 6], [1, 4, 7], [2, 5, 8]])


@pytest.mark.parametrize("ids,batch,match", [
    (np.arange(5), 0, r"batch \(number of streams\) must lie in \[1, 5\], got 0"),
    (np.arange(5), 6, r"batch \(number of streams\) must lie in \[1, 5\], got 6"),
    (np.zeros((2, 3), dtype=int), 1, r"ids has shape \(2, 3\), expected \(any,\) \(N,\)"),
])
def test_batchify_bad_arguments(ids, batch, match):
    with pytest.raises(ValueError, match=match):
        data.batchify(ids, batch)


@pytest.mark.parametrize("ids", [[0, 3, 1], [-1, 0, 1]])
def test_one_hot_rejects_ids_out_of_range(ids):
    # Before: an id outside [0, size) silently became an all-zero row.
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        data.one_hot(np.array(ids), 3)


def test_delayed_xor():
    xs, targets = data.delayed_xor(T=12, delay=3, batch=50, seed=1)
    assert xs.shape == (12, 50, 2) and targets.shape == (12, 50)
    np.testing.assert_array_equal(xs.sum(axis=-1), 1.0)
    bits = xs.argmax(axis=-1)
    assert np.all(targets[:3] == 0)
    for t in range(3, 12):
        np.testing.assert_array_equal(targets[t], 1 + (bits[t] != bits[t - 3]))
    # Neither bit alone predicts the target: both classes occur at each value of each bit.
    for one_bit in (bits[3:], bits[:-3]):
        for value in (0, 1):
            assert set(np.unique(targets[3:][one_bit == value])) == {1, 2}
    again, _ = data.delayed_xor(T=12, delay=3, batch=50, seed=1)
    assert np.array_equal(xs, again)


@pytest.mark.parametrize("kwargs,match", [
    (dict(T=5, delay=5, batch=2), r"delay must lie in \[1, 4\], got 5"),
    (dict(T=5, delay=0, batch=2), r"delay must lie in \[1, 4\], got 0"),
])
def test_delayed_xor_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.delayed_xor(**kwargs)
