"""Assignment 01_backprop: the sigmoid MLP of chapter 1 and its worked example."""
from __future__ import annotations

import numpy as np

from course_lib import mlp

from . import ExerciseSpec, MistakeEdit, Read, prelude

ASSIGNMENT = "01_backprop"
PRELUDE = prelude("from course_lib.activations import sigmoid")

S_NET = Read("01_backprop", "ch1-mlp")
S_RULES = Read("01_backprop", "ch1-layer-rules")
S_BACKWARD = Read("01_backprop", "ch1-worked-example")
S_MOMENTUM = Read("01_backprop", "ch1-sgd-momentum")
S_SECOND = Read("01_backprop", "ch1-worked-example")

SOLUTIONS = {
    "mlp_forward": '''def mlp_forward(weights, x):
    """Forward pass of the sigmoid MLP: I = W O_prev, O = sigmoid(I), no biases.

    Inputs:
    - weights: list of L arrays; weights[l] has shape (n_{l+1}, n_l) and
      weights[l][j, i] is the weight from neuron i of layer l to neuron j of layer l+1
    - x: the inputs O_1, O_2, ..., shape (n_0,)
    Returns:
    - inputs: list of L arrays, the summed input I of layer l+1, shape (n_{l+1},)
    - outputs: list of L+1 arrays, outputs[0] = x, outputs[l+1] = sigmoid(inputs[l])
    """
    # Read: Chapter 1, "A sigmoid network with hidden layers" and "Forward pass".
    ### BEGIN SOLUTION
    inputs, outputs = [], [x]
    for W in weights:
        inputs.append(W @ outputs[-1])
        outputs.append(sigmoid(inputs[-1]))
    return inputs, outputs
    ### END SOLUTION
''',
    "mlp_backward": '''def mlp_backward(weights, outputs, target):
    """Backward pass for E = 1/2 (target - output)^2, in the worked example's convention.

    delta of the output layer: (target - O) f'(I);  hidden layers:
    delta_j = (sum_k delta_k w_jk) f'(I_j);  dE/dw_ij = -delta_j O_i.

    Inputs:
    - weights: list of L arrays, weights[l] of shape (n_{l+1}, n_l)
    - outputs: list of L+1 arrays from mlp_forward (outputs[0] = x)
    - target: shape (n_L,)
    Returns:
    - deltas: list of L arrays, deltas[l] (shape (n_{l+1},)) = -dE/dI of layer l+1
    - grads: list of L arrays dE/dW, grads[l] has the shape of weights[l]
    """
    # Read: Chapter 1, "Backward pass: the error signals" (f'(I) = O (1 - O)).
    ### BEGIN SOLUTION
    deltas = [None] * len(weights)
    O_out = outputs[-1]
    deltas[-1] = (target - O_out) * O_out * (1 - O_out)
    for l in range(len(weights) - 2, -1, -1):
        O = outputs[l + 1]
        deltas[l] = (weights[l + 1].T @ deltas[l + 1]) * O * (1 - O)
    grads = [-np.outer(deltas[l], outputs[l]) for l in range(len(weights))]
    return deltas, grads
    ### END SOLUTION
''',
    "momentum_step": '''def momentum_step(weights, grads, lr, momentum, prev_updates):
    """One gradient-descent step with momentum (do not modify the inputs).

    Delta w = -lr * dE/dw + momentum * Delta w_prev;   w_new = w + Delta w

    Inputs:
    - weights, grads: lists of arrays of equal shapes
    - lr, momentum: floats
    - prev_updates: list of the previous step's Delta w arrays (zeros at the first step)
    Returns:
    - new_weights: list of arrays
    - updates: list of Delta w arrays (the next step's prev_updates)
    """
    # Read: Chapter 1, "Gradient descent, SGD and momentum".
    ### BEGIN SOLUTION
    updates = [-lr * g + momentum * d for g, d in zip(grads, prev_updates)]
    new_weights = [W + d for W, d in zip(weights, updates)]
    return new_weights, updates
    ### END SOLUTION
''',
}

MISTAKES = [
    MistakeEdit(
        "mlp_forward", "no sigmoid on the output neuron",
        "Every neuron, the output neuron 8 included, passes its summed input through the "
        "sigmoid: O_8 = f(I_8), not I_8.", S_NET,
        (("    return inputs, outputs\n",
          "    outputs[-1] = inputs[-1]\n    return inputs, outputs\n"),)),
    MistakeEdit(
        "mlp_backward", "sign flip in dE/dw",
        "The worked example's delta is (target - output) f'(I) = -dE/dI, so dE/dw_ij = -delta_j O_i: "
        "the gradient carries a minus sign (the update Delta w = -lr dE/dw then ADDS "
        "lr delta_j O_i).", S_BACKWARD,
        (("-np.outer(deltas[l], outputs[l])", "np.outer(deltas[l], outputs[l])"),)),
    MistakeEdit(
        "mlp_backward", "deltas returned as dE/dI (the opposite sign convention)",
        "This function follows the worked example's convention delta = -dE/dI = (target - O) f'(I); "
        "your deltas are dE/dI = (O - target) f'(I). Keep the gradients dE/dW as they are "
        "and return the deltas with the source's sign.", S_BACKWARD,
        (("(target - O_out) * O_out", "(O_out - target) * O_out"),
         ("-np.outer(deltas[l], outputs[l])", "np.outer(deltas[l], outputs[l])"))),
    MistakeEdit(
        "mlp_backward", "sigmoid derivative evaluated at the output instead of the input",
        "f'(I) = f(I)(1 - f(I)) = O (1 - O): multiply by O (1 - O) itself, do not apply "
        "the sigmoid to O a second time.", S_RULES,
        (("(target - O_out) * O_out * (1 - O_out)",
          "(target - O_out) * sigmoid(O_out) * (1 - sigmoid(O_out))"),
         ("@ deltas[l + 1]) * O * (1 - O)",
          "@ deltas[l + 1]) * sigmoid(O) * (1 - sigmoid(O))"))),
    MistakeEdit(
        "mlp_backward", "activation derivative missing in the hidden layers",
        "A hidden neuron's delta is the weighted sum of the deltas above it TIMES its own "
        "f'(I_j) = O_j (1 - O_j).", S_BACKWARD,
        (("(weights[l + 1].T @ deltas[l + 1]) * O * (1 - O)",
          "weights[l + 1].T @ deltas[l + 1]"),)),
    MistakeEdit(
        "momentum_step", "gradient added instead of subtracted",
        "Gradient DEscent: Delta w = -lr * dE/dw + momentum * Delta w_prev. (The worked example adds "
        "lr * delta * O because its delta already is -dE/dI.)", S_MOMENTUM,
        (("-lr * g + momentum * d", "lr * g + momentum * d"),)),
    MistakeEdit(
        "momentum_step", "momentum term forgotten",
        "The previous update Delta w_prev, scaled by the momentum, is part of this step's "
        "update; it is zero only at the very first step.", S_SECOND,
        (("-lr * g + momentum * d", "-lr * g"),)),
    MistakeEdit(
        "momentum_step", "learning rate applied to the momentum term too",
        "Delta w = -lr * dE/dw + momentum * Delta w_prev: the previous update is already a "
        "step, so it is scaled by the momentum only, not by lr as well.", S_MOMENTUM,
        (("-lr * g + momentum * d", "-lr * (g + momentum * d)"),)),
]


# ---------------------------------------------------------------- references
def mlp_forward(weights, x):
    return mlp.forward(weights, x)


def mlp_backward(weights, outputs, target):
    return mlp.backward(weights, outputs, target)


def momentum_step(weights, grads, lr, momentum, prev_updates):
    return mlp.momentum_step(weights, grads, lr, momentum, prev_updates)


# ---------------------------------------------------------------- cases
def _worked():
    ex = mlp.worked_example()
    return ex["weights"], ex["x"], ex["target"], ex["lr"], ex["momentum"]


def _random_net(rng, sizes):
    weights = [rng.normal(0.0, 1.5, (sizes[l + 1], sizes[l])) for l in range(len(sizes) - 1)]
    x = rng.uniform(-1.0, 1.0, sizes[0])
    target = rng.uniform(0.05, 0.95, sizes[-1])
    return weights, x, target


HIDDEN_SIZES = ((2, 3, 2, 1), (3, 4, 2), (1, 1, 1), (4, 2, 3, 2))


def forward_visible():
    weights, x, _, _, _ = _worked()
    zeros = [np.zeros((2, 2)), np.zeros((1, 2))]
    return [{"weights": weights, "x": x},
            {"weights": zeros, "x": np.array([1.0, -1.0])}]


def forward_hidden(rng):
    cases = []
    for sizes in HIDDEN_SIZES:
        weights, x, _ = _random_net(rng, sizes)
        cases.append({"weights": weights, "x": x})
    return cases


def backward_visible():
    weights, x, target, _, _ = _worked()
    _, outputs = mlp.forward(weights, x)
    return [{"weights": weights, "outputs": outputs, "target": target}]


def backward_hidden(rng):
    cases = []
    for sizes in HIDDEN_SIZES:
        weights, x, target = _random_net(rng, sizes)
        _, outputs = mlp.forward(weights, x)
        cases.append({"weights": weights, "outputs": outputs, "target": target})
    return cases


def momentum_visible():
    """The worked example's first step (no previous update) and its second step."""
    weights, x, target, lr, mom = _worked()
    _, outputs = mlp.forward(weights, x)
    _, grads = mlp.backward(weights, outputs, target)
    zeros = [np.zeros_like(W) for W in weights]
    first = {"weights": weights, "grads": grads, "lr": lr, "momentum": mom,
             "prev_updates": zeros}
    new_weights, updates = mlp.momentum_step(weights, grads, lr, mom, zeros)
    _, outputs2 = mlp.forward(new_weights, x)
    _, grads2 = mlp.backward(new_weights, outputs2, target)
    second = {"weights": new_weights, "grads": grads2, "lr": lr, "momentum": mom,
              "prev_updates": updates}
    return [first, second]


def momentum_hidden(rng):
    cases = []
    for sizes in HIDDEN_SIZES:
        weights, _, _ = _random_net(rng, sizes)
        cases.append({
            "weights": weights,
            "grads": [rng.standard_normal(W.shape) for W in weights],
            "lr": float(rng.uniform(0.05, 1.0)), "momentum": float(rng.uniform(0.1, 0.95)),
            "prev_updates": [0.1 * rng.standard_normal(W.shape) for W in weights]})
    return cases


EXERCISES_SPEC = [
    ExerciseSpec("mlp_forward", 2, mlp_forward, forward_visible, forward_hidden, S_NET,
                 "I and O of every layer on the chapter's worked example",
                 output_names=("inputs", "outputs")),
    ExerciseSpec("mlp_backward", 3, mlp_backward, backward_visible, backward_hidden,
                 S_BACKWARD, "the deltas and dE/dW of the worked example",
                 output_names=("deltas", "grads")),
    ExerciseSpec("momentum_step", 2, momentum_step, momentum_visible, momentum_hidden,
                 S_MOMENTUM, "the worked example's first and second momentum steps",
                 output_names=("new_weights", "updates")),
]
