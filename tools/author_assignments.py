"""Writes the nbgrader source notebooks solutions/<a>/<a>.ipynb (run after editing).

    python -m tools.author_assignments            # all assignments
    python -m tools.author_assignments 03_bptt    # one

One source of truth: the code of every answer cell (with its ``### BEGIN/END SOLUTION``
markers) lives in the registry module grader/exercises/aNN_<a>.py (``SOLUTIONS``), next
to the reference, the cases and the catalogued mistakes; the prose, the written
questions and the order of the parts live here. The committed notebook is exactly
``build(a)`` (tests/test_exercises_registry.py checks it). It also writes
course_lib/data/checks/<a>.npz, the visible cases and expected outputs the notebook's
self-check judges with (so course_lib needs nothing from the grader). After
regenerating, run ``python -m grader release`` to refresh the student versions in
exercises/.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader import exercises as reg
from grader import judge

REPO = Path(__file__).resolve().parent.parent
LETTERS = "ABCDEFGH"

SELF_CHECK = (
    "**How this notebook works.** Fill in the cells that say `raise NotImplementedError()` "
    "(delete that line). Each function is followed by a locked test cell that runs it on "
    "the small cases of the book and says either `passed` or which common mistake your "
    "result looks like, with the section to read. When graded, the same function also "
    "runs on hidden cases (other shapes and values, e.g. a batch of one or a single time "
    "step), so make it work for any shapes, not only the visible ones. Each function is "
    "graded on its own: use NumPy and the helpers already imported, not the course "
    "library's implementation of the thing you are asked to write (it is unavailable "
    "while grading). Your functions must not modify their inputs (arrays, dicts, lists): "
    "the caller still needs them, and a function that changes one loses its points; work "
    "on copies. Results are compared output by output with a tolerance scaled to each "
    "output's size, so float32 or a different valid formula is fine. Before submitting, "
    "restart the kernel and run all cells, then self-check from a terminal: "
    "`python -m grader check {a}.ipynb`.")

# ---------------------------------------------------------------------------- prose
# per assignment: title, intro, then parts in order: ("fn", name, text) or
# ("written", grade_id, points, question, model answer)
CONTENT = {
    "01_backprop": {
        "title": "Assignment 1: Backpropagation by hand, then in code",
        "intro": (
            "This assignment follows Chapter 1 (`01_backprop.html`), sections *A sigmoid "
            "network with hidden layers*, *Gradient descent, SGD and momentum* and *A worked "
            "example, step by step*. You implement the forward and backward pass of the "
            "small sigmoid network of the chapter's worked example, taken from a Russian-language "
            "backpropagation tutorial (inputs 1, 2; hidden "
            "neurons 3, 4, 5 and 6, 7; output neuron 8; no biases) and one step of gradient "
            "descent with momentum.\n\n"
            "Weights are stored as matrices as in the chapter's *The same step as "
            "matrices*: `weights[l]` has shape `(n_{l+1}, n_l)` and holds $w_{ij}$ (from "
            "neuron $i$ to neuron $j$) at row $j$, column $i$, so a layer computes `I = W @ O_prev`."),
        "parts": [
            ("fn", "mlp_forward",
             "The forward pass: for every layer the summed inputs $I_j$ and the outputs "
             "$O_j = f(I_j)$ with the sigmoid $f$ (imported from `course_lib.activations`). "
             "On the worked example you should find $I_3 = 0.1$, $I_4 = 1.78$, $I_5 = -0.45$, "
             "$I_6 = 0.175$ and $O_8 = 0.552$ (the source prints 0.158 and 0.551, computed from "
             "rounded activations)."),
            ("fn", "mlp_backward",
             "The backward pass in the worked example's convention: $\\delta_j = -\\partial E/\\partial I_j$, so the "
             "output delta is $(t - O_8) f'(I_8)$ and $\\partial E/\\partial w_{ij} = -\\delta_j O_i$. Return "
             "both the deltas and the gradients $\\partial E/\\partial W$ (matrices shaped like the weights). "
             "The chapter's table lists every delta of the worked example; note that "
             "$\\delta_3$ is positive."),
            ("fn", "momentum_step",
             "One step $\\Delta w = -\\eta\\, \\partial E/\\partial w + \\mu\\, \\Delta w_{prev}$, "
             "$w_{new} = w + \\Delta w$ (learning rate $\\eta$ = `lr`, momentum $\\mu$). "
             "The test runs the worked example's first step ($\\Delta w_{prev} = 0$) and its "
             "second step, where momentum matters."),
            ("written", "written_delta3", 2,
             "**Written answer.** The tutorial prints delta_3 = -0.0087. Compute delta_3 from "
             "the formula the source itself writes down, (delta_6 w_36 + delta_7 w_37) "
             "f'(I_3), with the numbers of the worked example. Which sign is right, and "
             "what does the wrong sign do to Delta w_13 and Delta w_23 and to the updated "
             "weights? (3-6 sentences.)",
             "delta_3 = (delta_6 w_36 + delta_7 w_37) O_3 (1 - O_3) = (0.016 * 2.2 + "
             "(-0.0016) * 0.34) * 0.52 * 0.48 = (0.0352 - 0.00054) * 0.2496 = +0.0087. "
             "The printed value has the wrong sign. Since Delta w_i3 = lr * delta_3 * O_i "
             "(the first step has no momentum term), Delta w_13 = 0.3 * 0.0087 * 0.6 = "
             "+0.00157 and Delta w_23 = +0.00183, not negative: the source moves w_13 and "
             "w_23 in the direction that INCREASES the error, and its updated w_13, w_23 "
             "are off by twice the step. (Grading: correct value with sign 1 point; "
             "consequence for both Delta w and new weights 1 point.)"),
        ],
    },
    "02_softmax": {
        "title": "Assignment 2: Softmax and cross-entropy",
        "intro": (
            "This assignment follows Chapter 2 (`02_softmax.html`): *From logits to "
            "probabilities*, *The softmax Jacobian*, *Cross-entropy, and why $\\partial E/\\partial v = "
            "\\hat y - t$*, *Numerically stable log-softmax* and *The batched form*. All "
            "functions take a batch: one ROW per example, shape `(N, C)`."),
        "parts": [
            ("fn", "softmax",
             "A softmax that stays finite for logits like 1000 or -1e4. The BPTT tutorial's output "
             "$y = [0.8, 0.2]$ comes from the logits $[\\log 4, 0]$."),
            ("fn", "cross_entropy",
             "The mean cross-entropy over the batch and its gradient with respect to the "
             "logits. Work with log-probabilities (log-softmax), never with $\\log(\\mathrm{softmax}(v))$, "
             "which is $\\log 0 = -\\infty$ for a very unlikely class. The BPTT tutorial's example, "
             "$y = [0.8, 0.2]$ with the first class correct, gives $\\partial E/\\partial v = [-0.2, 0.2]$."),
            ("fn", "softmax_backward",
             "The gradient through the softmax alone, for any upstream gradient dy_hat: "
             "$\\partial L/\\partial v = J^\\top\\, \\partial L/\\partial \\hat y$ row by row with "
             "$J = \\mathrm{diag}(\\hat y) - \\hat y \\hat y^\\top$. Do it without "
             "building $J$. With $\\partial E/\\partial \\hat y = -t / \\hat y$ of the cross-entropy this "
             "must give $\\hat y - t$ again: the first visible case checks exactly that."),
            ("written", "written_jacobian", 2,
             "**Written answer.** Starting from the Jacobian of the softmax, "
             "dy_i/dv_j = y_i (delta_ij - y_j), derive dE/dv = y - t for "
             "E = -sum_i t_i log y_i with a one-hot t. Then explain in two sentences why "
             "subtracting the row maximum from the logits changes neither the softmax nor "
             "this gradient.",
             "dE/dv_j = sum_i dE/dy_i dy_i/dv_j = sum_i (-t_i / y_i) y_i (delta_ij - y_j) "
             "= -sum_i t_i delta_ij + y_j sum_i t_i = -t_j + y_j, since sum_i t_i = 1. "
             "So dE/dv = y - t. Softmax is invariant to adding a constant c to every "
             "logit of a row: exp(v_i - c) / sum_j exp(v_j - c) = exp(v_i) / sum_j "
             "exp(v_j), because exp(-c) cancels; the function is the same, so its "
             "gradient is the same, and with c = max v every exponent is <= 0 and exp "
             "cannot overflow. (Grading: derivation 1 point, shift invariance 1 point.)"),
        ],
    },
    "03_bptt": {
        "title": "Assignment 3: Backpropagation through time",
        "intro": (
            "This assignment follows Chapter 3 (`03_bptt.html`). The RNN is the book's: "
            "$a_t = W_{xh} x_t + W_{hh} h_{t-1} + b_h$, $h_t = \\tanh(a_t)$, $v_t = W_{hy} h_t + b_y$, "
            "$\\hat y_t = \\mathrm{softmax}(v_t)$, written in code for a batch of row vectors, "
            "time-major: `xs` has shape `(T, B, D)` and "
            "`a_t = x_t @ W_xh.T + h_prev @ W_hh.T + b_h` has shape `(B, H)`. "
            "Gradients are \"delta times input transposed\", e.g. "
            "`dW_hh = sum_t da_t.T @ h_{t-1}`."),
        "parts": [
            ("fn", "rnn_step_backward",
             "One step backward: given everything that reaches $h_t$ (`dh_t`), return "
             "$\\partial L/\\partial x_t$, $\\partial L/\\partial h_{t-1}$ and this step's contributions to the weight gradients."),
            ("fn", "rnn_bptt",
             "Full BPTT for a tanh RNN with softmax cross-entropy, for both set-ups of the "
             "chapter: `mode=\"many_to_many\"` (a loss on every step; $L$ is the mean over "
             "the $T B$ predictions) and `mode=\"many_to_one\"` (a loss on the last step "
             "only; mean over its $B$ predictions). Return the loss and the gradients of "
             "all five parameters. Your function must not change `params`."),
            ("fn", "relu_rnn_example",
             "The ReLU exercise's worked example in code: a scalar RNN with ReLU, all weights 0.5, "
             "h_0 = 0 and the sequence y = (0, 1, -1, 2). The forward pass gives "
             "h = (0, 0, 0.5, 0), y_hat = (0, 0.25, 0) and per-step losses (1, 1.5625, 4) "
             "(the source prints h_3 = 0.375, y_hat_3 = 0.1875 and L_3 = 3.285). The loss is the mean over the T "
             "predictions."),
            ("written", "written_v_needs_bptt", 2,
             "**Written answer.** The ReLU exercise claims that the gradient for the input weight "
             "v needs no backpropagation through time. Write dL/dv for the scalar ReLU RNN "
             "as a sum over steps and show where h_{t-1}'s dependence on v enters. Use the "
             "second visible case of `relu_rnn_example` (ys = (1, 2, 1, 2)) to say how "
             "much the claim gets wrong.",
             "h_t = relu(w h_{t-1} + v y_{t-1}) depends on v directly AND through h_{t-1}, "
             "which itself depends on v. So dh_t/dv = relu'(a_t) (y_{t-1} + w dh_{t-1}/dv) "
             "and dL/dv = sum_t dL/dy_hat_t u dh_t/dv: the same recursion (BPTT) as for w; "
             "equivalently dv = sum_t da_t y_{t-1} with da_t = relu'(a_t)(u dL/dy_hat_t + "
             "w da_{t+1}). Dropping the recursion keeps only the terms relu'(a_t) u "
             "dL/dy_hat_t y_{t-1}. On ys = (1, 2, 1, 2) every step is active, so the "
             "dropped terms are not zero: the full gradient is dv = -1.974 (with the mean "
             "over T = 3), the truncated one -1.3125. On the ReLU exercise's own sequence the "
             "recursion happens to contribute nothing (steps 1 and 3 are inactive), which "
             "is why the claim looks harmless there. (Grading: recursion 1 point, "
             "numbers or a correct argument about when it matters 1 point.)"),
        ],
    },
    "04_truncation": {
        "title": "Assignment 4: Truncated BPTT",
        "intro": (
            "This assignment follows Chapter 4 (`04_truncation.html`): TBPTT($k_1$, $k_2$) in "
            "Williams & Peng's notation. The sequence is processed one step at a time; "
            "every $k_1$ steps an update is made whose loss is the mean loss of the outputs "
            "since the previous update, backpropagated through at most the last $k_2$ steps "
            "(every hidden state up to and including the one $k_2$ steps before the update "
            "point is a constant, *detached*, also where it feeds an output: when $k_1 > k_2$ "
            "the outputs older than the window give gradients to $W_{hy}$ and $b_y$ only; see "
            "the chapter's *Where the gradient stops: detaching $k_2$ steps back*). The forward pass is never truncated: the hidden state is "
            "carried from block to block. TBPTT($T$, $T$) on a sequence of length $T$ is full "
            "BPTT. A finite-difference check of the full loss does NOT match a truncated "
            "gradient, so the tests compare with reference values."),
        "parts": [
            ("fn", "tbptt_gradients",
             "Every update of one pass of TBPTT(k1, k2) over a sequence, with the "
             "parameters held fixed (no optimiser step in between): for each update the "
             "number of steps processed, the loss and the gradients; and the final hidden "
             "state. When k1 > k2 the outputs older than the window still give gradients to "
             "$W_{hy}$ and $b_y$, but nothing from them flows into the recurrence. When $k_1$ "
             "does not divide $T$ the last block is shorter and its loss is the mean over "
             "its own steps."),
            ("fn", "tbptt_train_sgd",
             "The same loop as a training pass: after each update, one SGD step "
             "$W \\leftarrow W - \\eta\\, \\partial L/\\partial W$, and the next block runs with the new "
             "parameters (online TBPTT). The hidden states already computed are kept, not "
             "recomputed. Backpropagating through a step of an earlier block, you may use "
             "either the current $W_{hh}$ or the $W_{hh}$ that step ran with (for example a "
             "buffer of step caches that keep their weights): both are accepted. Work on a "
             "copy of `params`: the function must not change its inputs. The test compares "
             "the update the pass made (parameters after minus before), the losses and "
             "$h_T$."),
            ("written", "written_k1_k2", 2,
             "**Written answer.** Compare TBPTT(k, k) with TBPTT(1, k) on a sequence of "
             "length T: how many updates does each make, how many backward steps does "
             "each cost in total, and which dependencies can each learn? Why does "
             "Sutskever recommend k2 > k1 (e.g. TBPTT(k, 2k))?",
             "TBPTT(k, k) makes about T/k updates, each backpropagating through k steps: "
             "about T backward steps in all, the cost of one full BPTT. But the output at "
             "the start of a block sees gradient from only one step back, the one at its "
             "end from k steps: on average only about k/2 steps of history. TBPTT(1, k) "
             "makes T updates of k backward steps each, k times the cost, but every output "
             "is backpropagated through the full k steps. With k2 > k1, e.g. TBPTT(k, 2k), "
             "every output of a block gets at least k steps of history (the oldest output "
             "of the block still has k steps behind it inside the window) for twice the "
             "backward cost of TBPTT(k, k), a good compromise. (Grading: counts/cost 1 "
             "point, the k2 > k1 argument 1 point.)"),
        ],
    },
    "05_vanishing": {
        "title": "Assignment 5: Vanishing and exploding gradients",
        "intro": (
            "This assignment follows Chapter 5 (`05_vanishing.html`): *Products of "
            "Jacobians* and *Exploding gradients and norm clipping*. With the loss on the last step only, "
            "dL/dh_t is dL/dh_T multiplied by one Jacobian diag(1 - h_s^2) W_hh per step "
            "back (in row form: `dh_prev = (dh * (1 - h_s**2)) @ W_hh`); its norm "
            "against the lag T - t shows whether the gradient vanishes or explodes."),
        "parts": [
            ("fn", "hidden_grad_norms",
             "The norm of $\\partial L/\\partial h_t$ for every $t = 0, \\dots, T$ for a tanh RNN whose only loss is "
             "the mean cross-entropy of the last step."),
            ("fn", "clip_grad_norm",
             "Global norm clipping as in Pascanu et al.: one factor for all parameters."),
            ("written", "written_spectral", 2,
             "**Written answer.** Using the product of Jacobians, bound ||dL/dh_t|| in "
             "terms of ||dL/dh_T||, the largest singular value sigma of W_hh and the lag "
             "T - t. What follows for sigma < 1, and why is sigma > 1 necessary but not "
             "sufficient for exploding gradients with tanh? Why does clipping help with "
             "exploding but not with vanishing gradients?",
             "dL/dh_t = dL/dh_T prod_{s=t+1..T} diag(1 - h_s^2) W_hh (row form), and "
             "|1 - h_s^2| <= 1, so ||dL/dh_t|| <= sigma^(T-t) ||dL/dh_T||. For sigma < 1 "
             "the gradient vanishes at least geometrically with the lag. For sigma > 1 the "
             "bound grows, but the factors 1 - h_s^2 shrink it, and saturated units "
             "(|h| near 1) make them near 0: a large W_hh also saturates the units, so "
             "growth is possible, not certain. Clipping rescales a too-large gradient to "
             "a bounded step in the same direction; it cannot restore information that "
             "products of small factors have removed, so it does nothing against "
             "vanishing (that needs gating: LSTM/GRU). (Grading: bound 1 point, the two "
             "explanations 1 point.)"),
        ],
    },
    "06_language_model": {
        "title": "Assignment 6: A character-level language model",
        "intro": (
            "This assignment follows Chapter 6 (`06_language_model.html`): *From text to "
            "carried-state streams*, *What to beat: perplexity and count-based models* and "
            "*Sampling, and temperature*. The model is the RNN of the earlier chapters with "
            "one-hot inputs and outputs over the same vocabulary of $V$ characters; here you "
            "write what a language model adds around it. Everything is time-major, as in "
            "`course_lib.rnn`: inputs `(T, B, V)`, logits `(T, B, V)`, targets `(T, B)`."),
        "parts": [
            ("fn", "perplexity",
             "The perplexity $\\operatorname{PP} = \\exp\\big(-\\frac{1}{N} \\sum_{i=1}^{N} "
             "\\log \\operatorname{softmax}(v_i)_{y_i}\\big)$ of logits against target ids, "
             "over all $N$ predictions, for logits of shape $(N, V)$ or $(T, B, V)$. Logits "
             "of uniform value give perplexity $V$. Use log-softmax with the maximum "
             "subtracted: logits of $\\pm 1000$ must not make the result `inf` or `nan`."),
            ("fn", "tempered_softmax",
             "The distribution a character is drawn from at temperature $\\tau$: "
             "$p_\\tau = \\operatorname{softmax}(v / \\tau)$ along the last axis. "
             "$\\tau < 1$ sharpens it, $\\tau > 1$ flattens it. At $\\tau = 0.01$ the "
             "logits are multiplied by 100."),
            ("fn", "make_streams",
             "Cut a long sequence of $N$ ids into $B$ contiguous streams side by side, as "
             "`charlm.stream_task` does: stream $b$ is the $b$-th slice of $T + 1$ ids, "
             "$T = \\lfloor N / B \\rfloor - 1$ (leftover ids at the end are dropped). The "
             "inputs are one-hot `(T, B, V)` with row `xs[t, b]` encoding id $t$ of stream "
             "$b$; the target `targets[t, b]` is id $t + 1$ of the same stream. With "
             "`ids = 0, 1, ..., 9` and $B = 2$ the streams are `0..4` and `5..9`."),
            ("written", "written_perplexity", 2,
             "**Written answer.** Show that a model that gives every one of the V "
             "characters probability 1/V has perplexity V, whatever the text, and that a "
             "model which predicts each character with probability p has perplexity 1/p. "
             "Then explain why, with carried-state streams, `ids.reshape(T + 1, B)` "
             "(no transpose) still trains but gives a worse model than the contiguous "
             "streams. (3-6 sentences.)",
             "Uniform: -log p(c_i) = log V for every i, so the mean cross-entropy is "
             "log V and PP = exp(log V) = V. Constant probability p: the mean of -log p "
             "is -log p, so PP = exp(-log p) = 1/p; perplexity is the inverse of the "
             "(geometric) mean probability of the right character, 'as uncertain as a "
             "uniform choice among PP characters'. With reshape(T + 1, B), step t of the "
             "batch holds ids tB .. tB + B - 1, so stream b holds every B-th character: "
             "targets[t, b] is the character B positions after the input, not the next "
             "one, and the state carried along a stream joins characters B apart. The "
             "model learns to predict a character from one B positions back (about as "
             "good as a unigram model for text) instead of the next character given its "
             "context. (Grading: both perplexity identities 1 point; the layout "
             "argument 1 point.)"),
        ],
    },
}


def _meta(grade_id, grade=False, solution=False, locked=False, points=None):
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
         "solution": solution, "task": False}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def _test_source(assignment, name, points, what):
    # the harness under a private name: a student's own `check` cannot shadow it
    return (f'"""{name} ({_points(points)}): {what}."""\n'
            "from course_lib.checks import check as _course_check\n\n"
            f'_course_check("{assignment}", "{name}", {name})\n'
            "### BEGIN HIDDEN TESTS\n"
            f'_course_check("{assignment}", "{name}", {name}, hidden=True)\n'
            "### END HIDDEN TESTS")


def build(assignment: str) -> nbformat.NotebookNode:
    module = reg.MODULES[assignment]
    specs = {s.name: s for s in module.EXERCISES_SPEC}
    content = CONTENT[assignment]
    parts = content["parts"]

    def points_of(part):
        return specs[part[1]].points if part[0] == "fn" else part[2]

    total = sum(points_of(p) for p in parts)
    overview = "\n".join(
        f"- Part {LETTERS[i]} ({_points(points_of(p))}): "
        + (f"`{p[1]}`" if p[0] == "fn" else "a written answer (graded by hand)")
        for i, p in enumerate(parts))
    cells = [
        new_markdown_cell(f"# {content['title']}\n\n{content['intro']}\n\n{overview}\n\n"
                          f"Total: {total} points.\n\n"
                          + SELF_CHECK.format(a=assignment),
                          metadata=_meta("intro", locked=True)),
        new_code_cell(module.PRELUDE.rstrip("\n"), metadata=_meta("imports", locked=True)),
    ]
    for i, part in enumerate(parts):
        letter = LETTERS[i]
        if part[0] == "fn":
            _, name, text = part
            spec = specs[name]
            cells.append(new_markdown_cell(
                f"## Part {letter} ({_points(spec.points)}): `{name}`\n\n{text}\n\n"
                f"Read: {spec.section.markdown()}.", metadata=_meta(f"part_{name}", locked=True)))
            cells.append(new_code_cell(module.SOLUTIONS[name].rstrip("\n"),
                                       metadata=_meta(name, solution=True)))
            cells.append(new_code_cell(_test_source(assignment, name, spec.points, spec.what),
                                       metadata=_meta(f"test_{name}", grade=True, locked=True,
                                                      points=spec.points)))
        else:
            _, grade_id, points, question, answer = part
            cells.append(new_markdown_cell(f"## Part {letter} ({points} points)\n\n{question}",
                                           metadata=_meta(f"{grade_id}_question", locked=True)))
            cells.append(new_markdown_cell(
                f"### BEGIN SOLUTION\n{answer}\n### END SOLUTION",
                metadata=_meta(grade_id, grade=True, solution=True, points=points)))
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    for cell in nb.cells:
        cell["id"] = cell.metadata["nbgrader"]["grade_id"].replace("_", "-")
    return nb


def write(assignment: str) -> Path:
    path = REPO / "solutions" / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(build(assignment))
    nbformat.write(build(assignment), path)
    return path


def write_check_data(assignment: str) -> Path:
    """course_lib/data/checks/<a>.npz: what the notebook's self-check judges with."""
    path = REPO / "course_lib" / "data" / "checks" / f"{assignment}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(judge.expected_data(assignment))
    return path


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(CONTENT)
    for a in names:
        print(write(a))
        print(write_check_data(a))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
