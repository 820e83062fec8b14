"""Small data sets: synthetic tasks with a controllable lag, and a text corpus.

Everything is generated or shipped with the package: nothing is downloaded.
All sequence arrays are time-major, like course_lib.rnn: xs (T, B, D).
"""

from importlib import resources

import numpy as np

from .validation import check_shape, class_targets, int_in_range


def adding_problem(T, batch, seed=0):
    """The adding problem (Hochreiter & Schmidhuber 1997): a many-to-one regression.

    Each sequence has two input channels: a random value in [0, 1), and a marker
    that is 1 at exactly two steps (one in the first half, one in the second half)
    and 0 elsewhere. The target is the sum of the two marked values, so the model
    must remember a value for up to T - 1 steps: T controls the lag.

    Inputs:
    - T: sequence length (>= 2);  batch: B;  seed: for numpy's default_rng
    Returns:
    - xs: shape (T, B, 2), float64
    - targets: shape (B, 1), float64 (use with loss="mse", mode="many_to_one")
    """
    T = int_in_range("T", T, 2, 10**7)
    batch = int_in_range("batch", batch, 1, 10**7)
    rng = np.random.default_rng(seed)
    values = rng.random((T, batch))
    first = rng.integers(0, T // 2, batch)
    second = rng.integers(T // 2, T, batch)
    markers = np.zeros((T, batch))
    columns = np.arange(batch)
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    xs = np.stack([values, markers], axis=-1)
    targets = (values[first, columns] + values[second, columns])[:, None]
    return xs, targets


def delayed_copy(T, delay, batch, vocab_size, seed=0):
    """Delayed copy: output at step t the symbol that was input at step t - delay.

    Symbols are 1 .. vocab_size-1, one-hot encoded; class 0 is "blank", the target
    for the first `delay` steps, before anything can be copied.

    Inputs:
    - T: sequence length;  delay: d, 0 <= d < T;  batch: B
    - vocab_size: V >= 2 (blank plus at least one symbol);  seed: for default_rng
    Returns:
    - xs: one-hot inputs, shape (T, B, V), float64
    - targets: int classes, shape (T, B) (use with loss="cross_entropy")
    """
    T = int_in_range("T", T, 1, 10**7)
    delay = int_in_range("delay", delay, 0, T - 1)
    batch = int_in_range("batch", batch, 1, 10**7)
    vocab_size = int_in_range("vocab_size", vocab_size, 2, 10**5)
    rng = np.random.default_rng(seed)
    symbols = rng.integers(1, vocab_size, (T, batch))
    targets = np.zeros((T, batch), dtype=np.int64)
    targets[delay:] = symbols[:T - delay]
    return one_hot(symbols, vocab_size), targets


def delayed_xor(T, delay, batch, seed=0):
    """Delayed XOR: output at step t the XOR of the bits read at steps t and t - delay.

    The inputs are random bits, one-hot encoded. Class 0 is "blank", the target for
    the first `delay` steps; from step delay on the target is 1 + (s_t XOR s_{t-delay}).
    Neither bit alone says anything about the target, and the answer is a nonlinear
    function of both, so a linear readout of a random recurrence, which fades and
    mixes old inputs, does much worse here than on delayed copy.

    Inputs:
    - T: sequence length;  delay: 1 <= delay < T;  batch: B;  seed: for default_rng
    Returns:
    - xs: one-hot bits, shape (T, B, 2), float64
    - targets: int classes in {0, 1, 2}, shape (T, B) (use with loss="cross_entropy")
    """
    T = int_in_range("T", T, 2, 10**7)
    delay = int_in_range("delay", delay, 1, T - 1)
    batch = int_in_range("batch", batch, 1, 10**7)
    bits = np.random.default_rng(seed).integers(0, 2, (T, batch))
    targets = np.zeros((T, batch), dtype=np.int64)
    targets[delay:] = 1 + (bits[delay:] ^ bits[:T - delay])
    return one_hot(bits, 2), targets


def one_hot(ids, size):
    """One-hot encode integer ids.

    Inputs: ids int array of any shape (...), values in [0, size)
    Returns: float64 array (..., size)
    """
    # Checked: an id outside [0, size) would silently give an all-zero row.
    ids = class_targets("ids", ids, np.shape(ids), size)
    return (ids[..., None] == np.arange(size)).astype(np.float64)


CORPORA = ("fables",)


def load_corpus(name="fables"):
    """Return a small text shipped in course_lib/data/<name>.txt.

    "fables": 27 of Aesop's fables retold in plain English for this course (public
    domain stories, new wording), about 17 KB, for a character-level model.
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}: choose one of {', '.join(map(repr, CORPORA))}")
    return resources.files("course_lib").joinpath("data", f"{name}.txt").read_text(encoding="utf-8")


class CharVocab:
    """A character vocabulary: the sorted set of characters of a text.

    Attributes:
    - chars: list of the characters, index = id
    - size: number of characters (V)
    """

    def __init__(self, text):
        self.chars = sorted(set(text))
        self.size = len(self.chars)
        self._ids = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text):
        """Text -> int64 array of ids, shape (len(text),)."""
        unknown = sorted(set(text) - self._ids.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown!r}")
        return np.array([self._ids[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        """Int ids (any iterable) -> text."""
        return "".join(self.chars[int(i)] for i in ids)


def encode(text, vocab):
    """Text -> ids with a CharVocab: shape (len(text),)."""
    return vocab.encode(text)


def decode(ids, vocab):
    """Ids -> text with a CharVocab."""
    return vocab.decode(ids)


def batchify(ids, batch):
    """Cut a long id sequence into `batch` parallel streams, time-major.

    Stream b is the b-th contiguous slice of ids, so the hidden state can be
    carried from one chunk of time to the next (as in TBPTT).

    Inputs: ids shape (N,);  batch: B, 1 <= B <= N
    Returns: int array (N // B, B); leftover ids at the end are dropped
    """
    ids = np.asarray(ids)
    check_shape("ids", ids, (None,), "(N,): one long sequence of ids")
    batch = int_in_range("batch (number of streams)", batch, 1, len(ids))
    steps = len(ids) // batch
    return ids[:steps * batch].reshape(batch, steps).T.copy()

