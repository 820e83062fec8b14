"""course_lib.charlm: splits, contiguous streams, perplexity, temperature sampling, n-grams."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import charlm, data, losses, rnn

from strategies import seeds


def test_split_is_contiguous_and_keeps_every_id():
    ids = np.arange(100)
    train, valid = charlm.split(ids, 0.1)
    assert len(valid) == 10
    np.testing.assert_array_equal(np.concatenate([train, valid]), ids)


@pytest.mark.parametrize("ids,fraction,match", [
    (np.arange(100), 0.0, "strictly between 0 and 1, got 0.0"),
    (np.arange(100), 1.0, "strictly between 0 and 1, got 1.0"),
    (np.arange(10), 0.05, "10 ids are too few"),
    (np.zeros((3, 4), dtype=int), 0.5, r"one sequence, shape \(N,\); got shape \(3, 4\)"),
])
def test_split_bad_arguments(ids, fraction, match):
    with pytest.raises(ValueError, match=match):
        charlm.split(ids, fraction)


def test_streams_are_contiguous_and_targets_are_the_next_ids():
    ids = np.arange(23) % 7
    xs, targets = charlm.stream_task(ids, batch=3, vocab_size=7)
    # 23 // 3 = 7 ids per stream, so T = 6 input steps
    assert xs.shape == (6, 3, 7) and targets.shape == (6, 3)
    inputs = xs.argmax(axis=-1)
    for b in range(3):
        stream = ids[7 * b: 7 * (b + 1)]        # stream b is the b-th contiguous slice
        np.testing.assert_array_equal(inputs[:, b], stream[:-1])
        np.testing.assert_array_equal(targets[:, b], stream[1:])
    # a window of steps continues exactly where the previous one stopped
    np.testing.assert_array_equal(inputs[3:, 1], targets[2:-1, 1])


@pytest.mark.parametrize("ids,batch,vocab,match,error", [
    (np.arange(10), 6, 10, r"batch \(number of streams\) must lie in \[1, 5\], got 6", ValueError),
    (np.arange(1), 1, 3, "1 id\\(s\\) given: a stream needs at least 2", ValueError),
    (np.array([0, 5, 1]), 1, 4, r"ids must lie in \[0, 4\)", ValueError),
    (np.array([0.0, 1.0]), 1, 4, "integer class indices", TypeError),
])
def test_stream_task_bad_arguments(ids, batch, vocab, match, error):
    with pytest.raises(error, match=match):
        charlm.stream_task(ids, batch, vocab)


def test_perplexity_of_uniform_and_of_confident_logits():
    targets = np.array([[0, 3], [2, 1]])
    assert charlm.perplexity(np.zeros((2, 2, 5)), targets) == pytest.approx(5.0)
    confident = 50.0 * data.one_hot(targets, 5)
    assert charlm.perplexity(confident, targets) == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, T=st.integers(1, 5), B=st.integers(1, 3), V=st.integers(2, 6))
def test_perplexity_is_exp_of_the_rnn_loss(seed, T, B, V):
    rng = np.random.default_rng(seed)
    params = rnn.init_params(V, 4, V, seed=seed % 1000)
    ids = rng.integers(0, V, (T, B))
    xs, targets = data.one_hot(ids, V), rng.integers(0, V, (T, B))
    loss, _, _ = rnn.bptt(params, xs, targets)
    assert charlm.evaluate(params, xs, targets) == pytest.approx(np.exp(loss), rel=1e-12)


def test_perplexity_bad_shapes():
    with pytest.raises(ValueError, match=r"targets has shape \(3,\), expected \(2,\)"):
        charlm.perplexity(np.zeros((2, 4)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="at least one prediction"):
        charlm.perplexity(np.zeros((0, 4)), np.zeros(0, dtype=int))


def test_tempered_softmax_limits():
    v = np.array([1.0, 3.0, 2.0])
    np.testing.assert_allclose(charlm.tempered_softmax(v, 1.0), losses.softmax(v))
    np.testing.assert_allclose(charlm.tempered_softmax(v, 1e-3), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(charlm.tempered_softmax(v, 1e6), np.full(3, 1 / 3), atol=1e-5)
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        charlm.tempered_softmax(v, 0)


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_entropy_grows_with_temperature(seed):
    v = np.random.default_rng(seed).standard_normal(6) * 3
    entropies = []
    for temperature in (0.25, 0.5, 1.0, 2.0, 4.0):
        p = charlm.tempered_softmax(v, temperature)
        entropies.append(-np.sum(p * np.log(p)))
    assert np.all(np.diff(entropies) > 0)


def corpus_model():
    text = data.load_corpus()[:400]
    vocab = data.CharVocab(text)
    return vocab, rnn.init_params(vocab.size, 8, vocab.size, seed=4)


def test_sample_text_reads_the_prompt_then_continues_it():
    vocab, params = corpus_model()
    prompt = "The fox"
    text = charlm.sample_text(params, vocab, prompt, 30, temperature=0.7, seed=3)
    assert text.startswith(prompt) and len(text) == len(prompt) + 30
    assert text == charlm.sample_text(params, vocab, prompt, 30, temperature=0.7, seed=3)
    # the same draws as rnn.sample started from the state after "The fo"
    ids = vocab.encode(prompt)
    hs, _ = rnn.forward(params, data.one_hot(ids[:-1, None], vocab.size))
    expected = rnn.sample(params, ids[-1], 30, h=hs[-1], temperature=0.7, seed=3)
    assert text[len(prompt):] == vocab.decode(expected)
    assert charlm.sample_text(params, vocab, "T", 0) == "T"


def test_sampling_at_a_low_temperature_is_greedy():
    vocab, params = corpus_model()
    text = charlm.sample_text(params, vocab, "A", 12, temperature=1e-4, seed=0)
    h, symbol, greedy = np.zeros((1, params["W_hh"].shape[0])), vocab.encode("A")[0], []
    for _ in range(12):
        h, _ = rnn.step_forward(data.one_hot([symbol], vocab.size), h, params)
        symbol = int(np.argmax(h @ params["W_hy"].T + params["b_y"]))
        greedy.append(symbol)
    assert text == "A" + vocab.decode(greedy)


def test_sample_text_bad_arguments():
    vocab, params = corpus_model()
    with pytest.raises(ValueError, match="prompt must hold at least one character"):
        charlm.sample_text(params, vocab, "", 5)
    with pytest.raises(ValueError, match=r"characters not in the vocabulary: \['~'\]"):
        charlm.sample_text(params, vocab, "a~", 5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        charlm.sample_text(params, vocab, "a", 5, temperature=-1.0)


def ngram_perplexity_by_counting(train, valid, order, V, alpha):
    """The definition, with dictionaries: the reference for the vectorised version."""
    contexts, grams = Counter(), Counter()
    for i in range(order - 1, len(train)):
        context = tuple(train[i - order + 1:i])
        contexts[context] += 1
        grams[context + (train[i],)] += 1
    sequence = list(train[len(train) - order + 1:]) if order > 1 else []
    sequence += list(valid)
    nll = []
    for i in range(order - 1, len(sequence)):
        context = tuple(sequence[i - order + 1:i])
        p = (grams[context + (sequence[i],)] + alpha) / (contexts[context] + alpha * V)
        nll.append(-np.log(p))
    assert len(nll) == len(valid)
    return float(np.exp(np.mean(nll)))


@settings(max_examples=40, deadline=None)
@given(seed=seeds, order=st.integers(1, 4), V=st.integers(2, 5),
       alpha=st.sampled_from([0.01, 0.5, 1.0]))
def test_ngram_perplexity_matches_counting(seed, order, V, alpha):
    rng = np.random.default_rng(seed)
    train, valid = rng.integers(0, V, 60), rng.integers(0, V, 15)
    assert charlm.ngram_perplexity(train, valid, order, V, alpha) == pytest.approx(
        ngram_perplexity_by_counting(train, valid, order, V, alpha), rel=1e-12)


def test_unigram_perplexity_by_hand():
    # counts of 0, 1, 2 in training: 3, 1, 0; with alpha = 1: p = 4/7, 2/7, 1/7
    train, valid = np.array([0, 0, 1, 0]), np.array([1, 2])
    expected = np.exp(-(np.log(2 / 7) + np.log(1 / 7)) / 2)
    assert charlm.ngram_perplexity(train, valid, 1, 3, alpha=1.0) == pytest.approx(expected)


def test_ngram_bad_arguments():
    train, valid = np.array([0, 1, 0]), np.array([1])
    with pytest.raises(ValueError, match="alpha must be positive"):
        charlm.ngram_perplexity(train, valid, 2, 2, alpha=0.0)
    with pytest.raises(ValueError, match=r"order must lie in \[1, 3\], got 4"):
        charlm.ngram_perplexity(train, valid, 4, 2)
    with pytest.raises(ValueError, match="valid_ids is empty"):
        charlm.ngram_perplexity(train, valid[:0], 2, 2)
