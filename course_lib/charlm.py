"""A character-level language model: data streams, perplexity, sampling, n-gram baselines.

The model itself is course_lib.rnn with one-hot inputs and outputs over the same
vocabulary (D = C = V); it is trained with course_lib.truncation. This module holds
what a language model adds around it (chapter 6 of the book):

- `split`: a contiguous train/validation split of a long id sequence;
- `stream_task`: B contiguous streams, one-hot inputs (T, B, V) and next-character
  targets (T, B), so that the hidden state can be carried from one TBPTT window to
  the next;
- `perplexity` / `evaluate`: exp of the mean cross-entropy per character;
- `tempered_softmax` / `sample_text`: sampling at a temperature, after a prompt;
- `ngram_perplexity`: the count-based baseline (add-alpha smoothed n-grams).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import rnn
from .data import batchify, one_hot
from .losses import cross_entropy, softmax
from .validation import as_float_array, class_targets, int_in_range


def split(ids, valid_fraction=0.1):
    """Split a sequence of ids into a training part and the validation part after it.

    The split is contiguous (no shuffling): a language model's validation text must be
    text it has not read, and the last fraction of a corpus is such a text.

    Inputs:
    - ids: int array, shape (N,)
    - valid_fraction: share of the ids kept for validation, 0 < valid_fraction < 1
    Returns:
    - train_ids: shape (N - M,);  valid_ids: shape (M,), M = round(N * valid_fraction)
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be one sequence, shape (N,); got shape {ids.shape}")
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must lie strictly between 0 and 1, got {valid_fraction}")
    n_valid = int(round(len(ids) * valid_fraction))
    if n_valid < 2 or len(ids) - n_valid < 2:
        raise ValueError(f"{len(ids)} ids are too few to split with valid_fraction="
                         f"{valid_fraction}: each part needs at least 2 ids")
    return ids[:-n_valid], ids[-n_valid:]


def stream_task(ids, batch, vocab_size):
    """Next-character inputs and targets in `batch` contiguous streams, time-major.

    Stream b is the b-th contiguous slice of ids (data.batchify), so step t + 1 of a
    stream is the character after step t: the state h_t of stream b is the right
    context for its next window. Leftover ids at the end are dropped.

    Inputs:
    - ids: int array (N,), values in [0, vocab_size)
    - batch: number of streams B, 1 <= B <= N // 2
    - vocab_size: V
    Returns:
    - xs: one-hot inputs, shape (T, B, V) with T = N // B - 1
    - targets: int (T, B), targets[t, b] = the id after the one in xs[t, b]
    """
    ids = class_targets("ids", ids, (None,), vocab_size)
    if len(ids) < 2:
        raise ValueError(f"{len(ids)} id(s) given: a stream needs at least 2, an input and its target")
    # at most N // 2 streams, so that every stream holds at least 2 ids
    batch = int_in_range("batch (number of streams)", batch, 1, len(ids) // 2)
    streams = batchify(ids, batch)
    return one_hot(streams[:-1], vocab_size), streams[1:]


def perplexity(vs, targets):
    """Perplexity exp(mean_t -log softmax(v_t)[y_t]) of logits against class targets.

    Inputs:
    - vs: logits, shape (..., V), e.g. (T, B, V) from rnn.forward
    - targets: int array of the leading shape of vs, e.g. (T, B)
    Returns:
    - float: exp of the mean cross-entropy (in nats) per prediction; 1 is perfect,
      V is what a uniform guess over V symbols scores
    """
    vs = as_float_array("vs", vs)
    if vs.ndim < 1 or vs.shape[-1] < 1 or vs.size == 0:
        raise ValueError(f"vs must hold logits with the class axis last, shape (..., V) "
                         f"and at least one prediction; got shape {vs.shape}")
    V = vs.shape[-1]
    targets = class_targets("targets", targets, vs.shape[:-1], V)
    mean_nll, _ = cross_entropy(vs.reshape(-1, V), targets.reshape(-1))
    return float(np.exp(mean_nll))


def evaluate(params, xs, targets, activation="tanh"):
    """Perplexity of an RNN on streams, reading each stream once from a zero state.

    No truncation is needed to evaluate: the forward pass carries the state through
    every stream from its first character to its last.

    Inputs: params (rnn.init_params with D == C == V); xs (T, B, V); targets (T, B)
    Returns: float, the perplexity over all T * B predictions
    """
    _, vs = rnn.forward(params, xs, activation=activation)
    return perplexity(vs, targets)


def tempered_softmax(v, temperature):
    """Probabilities softmax(v / temperature) along the last axis.

    temperature < 1 sharpens the distribution towards the most likely symbol,
    temperature > 1 flattens it towards uniform; temperature = 1 is the model's own.

    Inputs: v logits (..., V); temperature > 0
    Returns: probabilities, the shape of v
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(as_float_array("v", v) / temperature)


def sample_text(params, vocab, prompt, n, temperature=1.0, seed=0, activation="tanh"):
    """The prompt followed by n characters sampled from the model.

    The network first reads the prompt (its state then holds the prompt's context),
    then draws each next character from tempered_softmax(v_t, temperature) and feeds
    it back as the next input (rnn.sample).

    Inputs:
    - params: rnn parameters with D == C == vocab.size
    - vocab: data.CharVocab;  prompt: non-empty str of vocabulary characters
    - n: number of characters to generate (>= 0);  temperature > 0;  seed: for the draws
    Returns: str of length len(prompt) + n
    """
    if not prompt:
        raise ValueError("prompt must hold at least one character: the first input")
    n = int_in_range("n (characters to generate)", n, 0, 10**7)
    ids = vocab.encode(prompt)
    h = None
    if len(ids) > 1:
        hs, _ = rnn.forward(params, one_hot(ids[:-1, None], vocab.size), activation=activation)
        h = hs[-1]
    generated = rnn.sample(params, ids[-1], n, h=h, activation=activation,
                           temperature=temperature, seed=seed) if n else []
    return prompt + vocab.decode(generated)


def ngram_perplexity(train_ids, valid_ids, order, vocab_size, alpha=1.0):
    """Validation perplexity of an add-alpha smoothed n-gram model counted on train_ids.

    p(c | context) = (count(context, c) + alpha) / (count(context) + alpha * V),
    where the context is the previous order - 1 ids (none for order 1: character
    frequencies). The first validation ids take their context from the end of the
    training ids, so every validation id is predicted once.

    Inputs:
    - train_ids, valid_ids: int arrays (N,), (M,) with values in [0, vocab_size)
    - order: n >= 1 (1: unigram, 2: bigram, ...), at most len(train_ids)
    - vocab_size: V;  alpha: > 0, the pseudo-count of every symbol
    Returns: float, exp of the mean -log p over the M validation ids
    """
    train_ids = class_targets("train_ids", train_ids, (None,), vocab_size)
    valid_ids = class_targets("valid_ids", valid_ids, (None,), vocab_size)
    order = int_in_range("order", order, 1, len(train_ids))
    if not alpha > 0:
        raise ValueError(f"alpha must be positive (it keeps unseen symbols possible), got {alpha}")
    if len(valid_ids) == 0:
        raise ValueError("valid_ids is empty: nothing to evaluate")
    train_grams = sliding_window_view(train_ids, order)              # (N - n + 1, n)
    history = train_ids[len(train_ids) - (order - 1):] if order > 1 else train_ids[:0]
    valid_grams = sliding_window_view(np.concatenate([history, valid_ids]), order)
    grams = np.concatenate([train_grams, valid_grams])
    n_train = len(train_grams)
    # Number every distinct n-gram and every distinct context, then count the training ones.
    _, gram_index = np.unique(grams, axis=0, return_inverse=True)
    if order > 1:
        _, context_index = np.unique(grams[:, :-1], axis=0, return_inverse=True)
    else:
        context_index = np.zeros(len(grams), dtype=np.int64)
    gram_index, context_index = gram_index.reshape(-1), context_index.reshape(-1)
    gram_counts = np.bincount(gram_index[:n_train], minlength=gram_index.max() + 1)
    context_counts = np.bincount(context_index[:n_train], minlength=context_index.max() + 1)
    probs = ((gram_counts[gram_index[n_train:]] + alpha)
             / (context_counts[context_index[n_train:]] + alpha * vocab_size))
    return float(np.exp(-np.mean(np.log(probs))))

