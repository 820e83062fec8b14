"""The small sigmoid MLP of chapter 1 and the worked example it retells (two inputs,
sigmoid layers of three, two and one neurons, one step of SGD with momentum).

Column-vector convention as in the math: layer l computes I = W_l O_prev and
O = sigmoid(I), with W_l of shape (n_out, n_in) and no biases. The tutorial the
example comes from (microtechnics_backprop in references.bib) numbers the neurons
1..8 through the layers (inputs 1, 2; hidden 3, 4, 5; hidden 6, 7; output 8); w_ij
is the weight from neuron i to neuron j, stored at W_l[j_index, i_index].

Loss E = 1/2 (target - output)^2. Gradient descent with momentum:
    Delta w = -lr * dE/dw + momentum * Delta w_prev,   w_new = w + Delta w.
The tutorial writes delta_j = (target - output) f'(I_j) = -dE/dI_j and then ADDS
Delta w = lr * delta_j * O_i: the same update. `backward` returns the tutorial's
deltas (delta_j = -dE/dI_j) next to the gradients dE/dW.
"""

import numpy as np

from .activations import sigmoid, sigmoid_df
from .validation import as_float_array, check_shape

LAYER_SIZES = (2, 3, 2, 1)


def worked_example():
    """The tutorial's example: inputs, target, weights, learning rate, momentum.

    Returns a dict:
    - x: inputs O_1, O_2, shape (2,)
    - target: shape (1,)
    - weights: list of 3 arrays, shapes (3, 2), (2, 3), (1, 2)
    - lr: 0.3;  momentum: 0.1
    """
    named = {
        (1, 3): -1.0, (2, 3): 1.0, (1, 4): 2.5, (2, 4): 0.4, (1, 5): 1.0, (2, 5): -1.5,
        (3, 6): 2.2, (4, 6): -1.4, (5, 6): 0.56, (3, 7): 0.34, (4, 7): 1.05, (5, 7): 3.1,
        (6, 8): 0.75, (7, 8): -0.22,
    }
    return {
        "x": np.array([0.6, 0.7]),
        "target": np.array([0.9]),
        "weights": weights_from_named(named),
        "lr": 0.3,
        "momentum": 0.1,
    }


def node_numbers(layer_sizes=LAYER_SIZES):
    """The tutorial's neuron numbers per layer, e.g. [[1, 2], [3, 4, 5], [6, 7], [8]]."""
    numbers, first = [], 1
    for size in layer_sizes:
        numbers.append(list(range(first, first + size)))
        first += size
    return numbers


def weights_from_named(named, layer_sizes=LAYER_SIZES):
    """Build the weight matrices from a dict {(i, j): w_ij}.

    Inputs:
    - named: dict mapping (from neuron i, to neuron j) to the weight
    - layer_sizes: neurons per layer, inputs first
    Returns:
    - list of arrays, W_l of shape (layer_sizes[l+1], layer_sizes[l])
    """
    nodes = node_numbers(layer_sizes)
    return [
        np.array([[named[(i, j)] for i in nodes[l]] for j in nodes[l + 1]], dtype=np.float64)
        for l in range(len(layer_sizes) - 1)
    ]


def named_weights(weights):
    """Inverse of weights_from_named: {(i, j): w_ij} for a list of weight matrices."""
    sizes = [weights[0].shape[1]] + [W.shape[0] for W in weights]
    nodes = node_numbers(sizes)
    return {
        (i, j): float(W[b, a])
        for l, W in enumerate(weights)
        for b, j in enumerate(nodes[l + 1])
        for a, i in enumerate(nodes[l])
    }


def forward(weights, x):
    """Forward pass: I_l = W_l O_{l-1}, O_l = sigmoid(I_l); inputs pass through (O = I).

    Inputs:
    - weights: list of L arrays, W_l of shape (n_l, n_{l-1})
    - x: inputs, shape (n_0,)
    Returns:
    - inputs: list of L arrays, the summed input I of each non-input layer, shapes (n_l,)
    - outputs: list of L+1 arrays, outputs[0] = x, outputs[l] = sigmoid(inputs[l-1])
    """
    x = as_float_array("x", x)
    check_shape("x", x, (weights[0].shape[1],), "(n_inputs,)")
    inputs, outputs = [], [x]
    for W in weights:
        check_shape("weight matrix", W, (None, outputs[-1].shape[0]), "(n_out, n_in)")
        inputs.append(W @ outputs[-1])
        outputs.append(sigmoid(inputs[-1]))
    return inputs, outputs


def backward(weights, outputs, target):
    """Backward pass for E = 1/2 (target - output)^2.

    delta_out = (target - O_out) f'(I_out);  delta_j = (sum_k delta_k w_jk) f'(I_j)
    dE/dw_ij = -delta_j O_i, i.e. dE/dW_l = -outer(delta_l, O_{l-1}).
    f'(I) = O (1 - O) for the sigmoid.

    Inputs:
    - weights: list of L arrays, W_l of shape (n_l, n_{l-1})
    - outputs: list of L+1 arrays from `forward`
    - target: shape (n_L,)
    Returns:
    - deltas: list of L arrays (the worked example's sign: delta = -dE/dI), shapes (n_l,)
    - grads: list of L arrays dE/dW_l, shapes like weights
    """
    target = as_float_array("target", target)
    check_shape("target", target, outputs[-1].shape, "(n_outputs,)")
    deltas = [None] * len(weights)
    deltas[-1] = (target - outputs[-1]) * sigmoid_df(outputs[-1])
    for l in range(len(weights) - 2, -1, -1):
        deltas[l] = (weights[l + 1].T @ deltas[l + 1]) * sigmoid_df(outputs[l + 1])
    grads = [-np.outer(delta, O_prev) for delta, O_prev in zip(deltas, outputs[:-1])]
    return deltas, grads


def momentum_step(weights, grads, lr, momentum, prev_updates=None):
    """One gradient-descent step with momentum (returns new arrays, inputs untouched).

    Delta w = -lr * dE/dw + momentum * Delta w_prev;  w_new = w + Delta w

    Inputs:
    - weights, grads: lists of arrays of equal shapes
    - lr, momentum: floats
    - prev_updates: list of the previous Delta w arrays, or None (zeros: first step)
    Returns:
    - new_weights: list of arrays
    - updates: list of Delta w arrays (pass as prev_updates next time)
    """
    if prev_updates is None:
        prev_updates = [np.zeros_like(W) for W in weights]
    updates = [-lr * g + momentum * d for g, d in zip(grads, prev_updates)]
    return [W + d for W, d in zip(weights, updates)], updates


def trace_step(weights, x, target, lr, momentum, prev_updates=None):
    """Every intermediate of one training step, keyed by the worked example's neuron numbers.

    Inputs: as forward, backward and momentum_step.
    Returns a dict:
    - "I": {j: I_j} summed input of each non-input neuron (inputs: I_j = O_j = x)
    - "O": {j: O_j} output of every neuron
    - "delta": {j: delta_j} the worked example's delta_j = -dE/dI_j for every non-input neuron
    - "E": the loss 1/2 (target - output)^2 (summed over outputs)
    - "grad": {(i, j): dE/dw_ij}
    - "delta_w": {(i, j): Delta w_ij}
    - "new_w": {(i, j): w_ij + Delta w_ij}
    - "new_weights", "updates": the same as lists of matrices (for the next step)
    """
    inputs, outputs = forward(weights, x)
    deltas, grads = backward(weights, outputs, target)
    new_weights, updates = momentum_step(weights, grads, lr, momentum, prev_updates)
    nodes = node_numbers([len(x)] + [W.shape[0] for W in weights])

    def by_node(layers, numbers):
        return {j: float(v) for ns, vals in zip(numbers, layers) for j, v in zip(ns, vals)}

    return {
        "I": by_node([outputs[0]] + inputs, nodes),  # input neurons: I_j = O_j = x_j
        "O": by_node(outputs, nodes),
        "delta": by_node(deltas, nodes[1:]),
        "E": float(0.5 * np.sum((np.asarray(target) - outputs[-1]) ** 2)),
        "grad": named_weights(grads),
        "delta_w": named_weights(updates),
        "new_w": named_weights(new_weights),
        "new_weights": new_weights,
        "updates": updates,
    }
