"""Assignment 06_language_model: perplexity, sampling temperature, carried-state streams."""
from __future__ import annotations

import numpy as np

from course_lib import charlm

from . import ExerciseSpec, MistakeEdit, Read, prelude

ASSIGNMENT = "06_language_model"
PRELUDE = prelude()

S_DATA = Read("06_language_model", "ch6-data")
S_PERPLEXITY = Read("06_language_model", "ch6-baselines")
S_SAMPLING = Read("06_language_model", "ch6-sampling")
S_STABLE = Read("02_softmax", "ch2-stability")

SOLUTIONS = {
    "perplexity": '''def perplexity(vs, targets):
    """Perplexity exp(-(1/N) sum_i log softmax(v_i)[y_i]) of logits against targets.

    Inputs:
    - vs: logits with the vocabulary axis last: shape (N, V), or (T, B, V) as an RNN
      returns them (N = T * B predictions)
    - targets: int ids of the leading shape of vs, (N,) or (T, B); targets[t, b] is
      the character that the logits vs[t, b] predict
    Returns:
    - float: exp of the mean cross-entropy (in nats) per prediction
    """
    # Read: Chapter 6, "What to beat: perplexity and count-based models".
    ### BEGIN SOLUTION
    V = vs.shape[-1]
    v = vs.reshape(-1, V)
    y = np.reshape(targets, -1)
    shifted = v - np.max(v, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    nll = -log_probs[np.arange(len(y)), y]
    return float(np.exp(np.mean(nll)))
    ### END SOLUTION
''',
    "tempered_softmax": '''def tempered_softmax(v, temperature):
    """Probabilities softmax(v / temperature) along the last axis.

    Inputs:
    - v: logits, shape (V,) or (B, V)
    - temperature: float > 0 (e.g. 0.01 ... 10)
    Returns:
    - probabilities, the shape of v; each one sums to 1 over the last axis
    """
    # Read: Chapter 6, "Sampling, and temperature".
    ### BEGIN SOLUTION
    z = v / temperature
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)
    ### END SOLUTION
''',
    "make_streams": '''def make_streams(ids, batch, vocab_size):
    """Cut a sequence of ids into `batch` contiguous streams: inputs and next-id targets.

    Stream b is the b-th contiguous slice of ids (of length T + 1, T = N // batch - 1;
    leftover ids at the end are dropped), so that step t + 1 of a stream is the id
    after step t and the hidden state can be carried along it.

    Inputs:
    - ids: int array, shape (N,), values in 0..vocab_size-1
    - batch: number of streams B, 1 <= B <= N // 2
    - vocab_size: V
    Returns:
    - xs: one-hot inputs, shape (T, B, V), time-major
    - targets: int array (T, B), targets[t, b] = the id after the one xs[t, b] encodes
    """
    # Read: Chapter 6, "From text to carried-state streams".
    ### BEGIN SOLUTION
    ids = np.asarray(ids)
    T = len(ids) // batch - 1
    streams = ids[:(T + 1) * batch].reshape(batch, T + 1).T
    inputs, targets = streams[:-1], streams[1:]
    xs = np.eye(vocab_size)[inputs]
    return xs, targets
    ### END SOLUTION
''',
}

MISTAKES = [
    MistakeEdit(
        "perplexity", "exp of the summed loss",
        "Perplexity is the exponential of the MEAN negative log-probability per "
        "prediction; exp of the sum grows with the length of the text.", S_PERPLEXITY,
        (("np.exp(np.mean(nll))", "np.exp(np.sum(nll))"),)),
    MistakeEdit(
        "perplexity", "base 2 instead of e",
        "The cross-entropy is in nats (natural logarithm), so its perplexity is e to its "
        "power; 2 to the power of a loss in nats mixes two bases.", S_PERPLEXITY,
        (("np.exp(np.mean(nll))", "2.0 ** np.mean(nll)"),)),
    MistakeEdit(
        "perplexity", "mean of the per-prediction exponentials",
        "Average the negative log-probabilities first, then take one exponential: the mean "
        "of exp(nll) is larger (Jensen's inequality) and is not the perplexity.",
        S_PERPLEXITY,
        (("np.exp(np.mean(nll))", "np.mean(np.exp(nll))"),)),
    MistakeEdit(
        "perplexity", "cross-entropy returned without the exponential",
        "The mean negative log-probability is the cross-entropy (nats per character); "
        "the perplexity is its exponential.", S_PERPLEXITY,
        (("float(np.exp(np.mean(nll)))", "float(np.mean(nll))"),)),
    MistakeEdit(
        "perplexity", "no max-subtraction in the log-softmax (inf or NaN)",
        "exp of a logit like 1000 is inf in float64; subtract each row's maximum before "
        "exponentiating and compute log-probabilities directly.", S_STABLE,
        (("shifted = v - np.max(v, axis=1, keepdims=True)", "shifted = v"),)),
    MistakeEdit(
        "perplexity", "softmax over the predictions instead of the vocabulary",
        "Each prediction's probabilities are normalised over the V characters, the LAST "
        "axis of vs, not over the predictions.", S_PERPLEXITY,
        (("np.max(v, axis=1, keepdims=True)", "np.max(v, axis=0, keepdims=True)"),
         ("np.sum(np.exp(shifted), axis=1, keepdims=True)",
          "np.sum(np.exp(shifted), axis=0, keepdims=True)"))),
    MistakeEdit(
        "perplexity", "targets shifted by one step",
        "targets[t] already is the character that vs[t] predicts (the next one after the "
        "input at step t): compare vs[t] with targets[t], without shifting again.", S_DATA,
        (("v = vs.reshape(-1, V)", "v = vs[:-1].reshape(-1, V)"),
         ("y = np.reshape(targets, -1)", "y = np.reshape(targets[1:], -1)"))),
    MistakeEdit(
        "tempered_softmax", "multiplied by the temperature instead of divided",
        "The tempered distribution is softmax(v / tau): a low temperature must sharpen it "
        "(larger logit gaps), so divide by tau.", S_SAMPLING,
        (("z = v / temperature", "z = v * temperature"),)),
    MistakeEdit(
        "tempered_softmax", "softmax(v) ** (1 / T) not renormalised",
        "Raising the probabilities to the power 1/tau gives the right shape, but they no "
        "longer sum to 1: divide by their sum again (which is softmax(v / tau)).",
        S_SAMPLING,
        (("z = v / temperature", "z = v"),
         ("return e / np.sum(e, axis=-1, keepdims=True)",
          "return (e / np.sum(e, axis=-1, keepdims=True)) ** (1 / temperature)"))),
    MistakeEdit(
        "tempered_softmax", "no max-subtraction (overflow at low temperature)",
        "At tau = 0.01 the logits are multiplied by 100 and exp overflows to inf; subtract "
        "the maximum of v / tau before exponentiating.", S_STABLE,
        (("    z = z - np.max(z, axis=-1, keepdims=True)\n", ""),)),
    MistakeEdit(
        "make_streams", "reshaped without the transpose (interleaved streams)",
        "ids.reshape(T + 1, B) puts consecutive ids side by side in one step: stream b "
        "then holds every B-th character. Cut B contiguous slices, reshape(B, T + 1), and "
        "transpose to time-major.", S_DATA,
        (("ids[:(T + 1) * batch].reshape(batch, T + 1).T",
          "ids[:(T + 1) * batch].reshape(T + 1, batch)"),)),
    MistakeEdit(
        "make_streams", "targets equal to the inputs",
        "A language model predicts the NEXT character: targets are the streams shifted "
        "one step ahead of the inputs.", S_DATA,
        (("inputs, targets = streams[:-1], streams[1:]",
          "inputs, targets = streams[:-1], streams[:-1]"),)),
    MistakeEdit(
        "make_streams", "targets shifted the wrong way (the previous character)",
        "The input at step t is character t of the stream and its target character "
        "t + 1: inputs are streams[:-1], targets streams[1:].", S_DATA,
        (("inputs, targets = streams[:-1], streams[1:]",
          "inputs, targets = streams[1:], streams[:-1]"),)),
    MistakeEdit(
        "make_streams", "batch-first layout",
        "The course's RNN is time-major: xs has shape (T, B, V) and targets (T, B).",
        S_DATA,
        (("return xs, targets", "return xs.transpose(1, 0, 2), targets.T"),)),
]


# ---------------------------------------------------------------- references
def perplexity(vs, targets):
    return charlm.perplexity(vs, targets)


def tempered_softmax(v, temperature):
    return charlm.tempered_softmax(v, temperature)


def make_streams(ids, batch, vocab_size):
    return charlm.stream_task(ids, batch, vocab_size)


# ---------------------------------------------------------------- cases
def logits_dims(case):
    shape = np.shape(case.get("vs", case.get("v")))
    return {"V": shape[-1], "predictions": int(np.prod(shape[:-1]))}


def streams_dims(case):
    n, b = len(case["ids"]), case["batch"]
    return {"N": n, "B": b, "T": n // b - 1, "V": case["vocab_size"]}


def perplexity_visible():
    """Uniform logits give perplexity V; a (T, B, V) batch; logits of +-1000."""
    vs = np.array([[[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]],
                   [[0.0, 0.0, 3.0], [1.0, -2.0, 0.5]],
                   [[-1.0, 2.5, 0.0], [0.0, 1.0, 1.0]]])
    return [{"vs": np.zeros((4, 5)), "targets": np.array([0, 1, 2, 3])},
            {"vs": vs, "targets": np.array([[0, 1], [2, 2], [1, 0]])},
            # rows offset by +-1000: the probabilities are moderate, exp(v) is not
            {"vs": np.array([[1001.0, 1000.0, 998.0], [-1000.0, -999.5, -999.0],
                             [2.0, 1.0, 0.0]]),
             "targets": np.array([1, 2, 0])}]


def perplexity_hidden(rng):
    def case(shape, scale=2.0):
        V = shape[-1]
        return {"vs": scale * rng.standard_normal(shape),
                "targets": rng.integers(0, V, shape[:-1])}
    cases = [case((6, 4)), case((5, 3, 7)), case((1, 6)), case((1, 1, 3)), case((8, 2, 5))]
    # logits near +-1000 (each prediction offset by one of them): exp overflows to inf
    # or underflows to 0 unless each row's maximum is subtracted. (Not 1e4: float32 keeps
    # only about 3 decimals of a logit that large, so honest float32 code would fail.)
    extreme = case((4, 2, 4))
    extreme["vs"] += rng.choice([-1000.0, 1000.0], (4, 2, 1))
    return cases + [extreme]


def tempered_visible():
    v = np.array([2.0, 1.0, 0.0, -1.0])
    return [{"v": v, "temperature": 0.5}, {"v": v, "temperature": 2.0},
            # v / 0.01 reaches 800: exp overflows unless the maximum is subtracted
            {"v": np.array([[8.0, 7.99, 7.0], [0.0, 0.005, 0.01]]), "temperature": 0.01}]


def tempered_hidden(rng):
    cases = [{"v": 2.0 * rng.standard_normal(shape), "temperature": float(t)}
             for shape, t in (((6,), 0.7), ((3, 5), 1.6), ((1, 4), 0.25), ((2, 8), 5.0))]
    # logits around 10 at temperature 0.01: exp(v / T) overflows unless shifted
    cases.append({"v": 10.0 + 0.02 * rng.standard_normal((4, 6)), "temperature": 0.01})
    return cases


def streams_visible():
    return [{"ids": np.arange(10), "batch": 2, "vocab_size": 10},
            {"ids": np.array([3, 1, 4, 1, 5, 2, 6, 5, 3, 5, 0]), "batch": 3, "vocab_size": 7}]


def streams_hidden(rng):
    cases = []
    for n, b, V in ((30, 4, 6), (17, 1, 5), (12, 6, 4), (25, 3, 9)):
        cases.append({"ids": rng.integers(0, V, n), "batch": b, "vocab_size": V})
    return cases


EXERCISES_SPEC = [
    ExerciseSpec("perplexity", 2, perplexity, perplexity_visible, perplexity_hidden,
                 S_PERPLEXITY, "uniform logits give V; a (T, B, V) batch; logits of +-1000",
                 dims=logits_dims),
    ExerciseSpec("tempered_softmax", 1, tempered_softmax, tempered_visible, tempered_hidden,
                 S_SAMPLING, "temperatures 0.5, 2 and 0.01 (where exp overflows unless "
                 "shifted)", dims=logits_dims),
    ExerciseSpec("make_streams", 2, make_streams, streams_visible, streams_hidden, S_DATA,
                 "contiguous streams, time-major, targets one step ahead",
                 output_names=("xs", "targets"), dims=streams_dims),
]
