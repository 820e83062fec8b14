"""course_lib.mlp: the sigmoid network's worked example (printed numbers where the source is
right, corrected ones where it is not), gradients, the momentum step."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import mlp
from course_lib.gradcheck import check_gradients
from strategies import seeds

# (quantity, index): (the source's printed value, the correct value to the same precision).
# Where the two agree, the source is right at its printed precision.
WORKED_EXAMPLE = {
    ("I", 3): ("0.1", "0.1"), ("I", 4): ("1.78", "1.78"), ("I", 5): ("-0.45", "-0.45"),
    ("O", 3): ("0.52", "0.52"), ("O", 4): ("0.86", "0.86"), ("O", 5): ("0.39", "0.39"),
    ("I", 6): ("0.158", "0.175"), ("I", 7): ("2.288", "2.284"),
    ("O", 6): ("0.54", "0.54"), ("O", 7): ("0.908", "0.908"),
    ("I", 8): ("0.205", "0.208"), ("O", 8): ("0.551", "0.552"),
    ("delta", 8): ("0.0863", "0.0861"), ("delta", 7): ("-0.0016", "-0.0016"),
    ("delta", 6): ("0.016", "0.016"), ("delta", 5): ("0.001", "0.001"),
    ("delta", 4): ("-0.003", "-0.003"), ("delta", 3): ("-0.0087", "0.0087"),
    ("delta_w", (7, 8)): ("0.0235", "0.0234"), ("delta_w", (6, 8)): ("0.014", "0.014"),
    ("delta_w", (5, 7)): ("-0.00019", "-0.00019"), ("delta_w", (4, 7)): ("-0.0004", "-0.0004"),
    ("delta_w", (3, 7)): ("-0.00025", "-0.00025"), ("delta_w", (5, 6)): ("0.0019", "0.0019"),
    ("delta_w", (4, 6)): ("0.0041", "0.0041"), ("delta_w", (3, 6)): ("0.0025", "0.0025"),
    ("delta_w", (2, 5)): ("0.00021", "0.00020"), ("delta_w", (1, 5)): ("0.00018", "0.00017"),
    ("delta_w", (2, 4)): ("-0.00063", "-0.00062"), ("delta_w", (1, 4)): ("-0.00054", "-0.00054"),
    ("delta_w", (2, 3)): ("-0.00183", "0.00182"), ("delta_w", (1, 3)): ("-0.00157", "0.00156"),
    ("new_w", (7, 8)): ("-0.1965", "-0.1966"), ("new_w", (6, 8)): ("0.764", "0.764"),
    ("new_w", (5, 7)): ("3.0998", "3.0998"), ("new_w", (4, 7)): ("1.0496", "1.0496"),
    ("new_w", (3, 7)): ("0.3398", "0.3397"), ("new_w", (5, 6)): ("0.5619", "0.5619"),
    ("new_w", (4, 6)): ("-1.3959", "-1.3959"), ("new_w", (3, 6)): ("2.2025", "2.2025"),
    ("new_w", (2, 5)): ("-1.4998", "-1.4998"), ("new_w", (1, 5)): ("1.00018", "1.00017"),
    ("new_w", (2, 4)): ("0.39937", "0.39938"), ("new_w", (1, 4)): ("2.49946", "2.49946"),
    ("new_w", (2, 3)): ("0.99817", "1.00182"), ("new_w", (1, 3)): ("-1.00157", "-0.99844"),
}
SIGN_ERRORS = {("delta", 3), ("delta_w", (1, 3)), ("delta_w", (2, 3)),
               ("new_w", (1, 3)), ("new_w", (2, 3))}


def worked_step():
    ex = mlp.worked_example()
    return mlp.trace_step(ex["weights"], ex["x"], ex["target"], ex["lr"], ex["momentum"])


@pytest.mark.parametrize("key", list(WORKED_EXAMPLE), ids=str)
def test_worked_example_to_the_printed_precision(key):
    printed, correct = WORKED_EXAMPLE[key]
    decimals = len(correct.split(".")[1])
    value = worked_step()[key[0]][key[1]]
    assert abs(value - float(correct)) <= 0.5 * 10.0**-decimals + 1e-12


def test_source_mistakes_are_exactly_the_known_ones():
    wrong = {key for key, (printed, correct) in WORKED_EXAMPLE.items() if printed != correct}
    # Sign errors: the source's delta_3 has the wrong sign, and so do the updates built on it.
    assert SIGN_ERRORS <= wrong
    assert worked_step()["delta"][3] > 0 and WORKED_EXAMPLE[("delta", 3)][0].startswith("-")
    # The rest are a few units in the last printed digit off, because the source
    # carried rounded numbers forward (I_6 the most: 0.158 against 0.175).
    for key in wrong - SIGN_ERRORS - {("I", 6)}:
        printed, correct = WORKED_EXAMPLE[key]
        digits = len(printed.split(".")[1])
        assert abs(float(printed) - float(correct)) <= 5 * 10.0**-digits, key


def test_i6_unrounded_is_0_175_not_0_158():
    step = worked_step()
    assert step["I"][6] == pytest.approx(0.175021, abs=1e-6)
    # 0.158 is what the rounded outputs O_3..O_5 = 0.52, 0.86, 0.39 give.
    assert 0.52 * 2.2 + 0.86 * -1.4 + 0.39 * 0.56 == pytest.approx(0.158, abs=1e-3)


def test_delta_5_uses_its_own_derivative():
    step = worked_step()
    O = step["O"]
    expected = (step["delta"][7] * 3.1 + step["delta"][6] * 0.56) * O[5] * (1 - O[5])
    assert step["delta"][5] == pytest.approx(expected, rel=1e-12)


def test_deltas_are_minus_dE_dI_and_updates_follow_the_sign_convention():
    ex = mlp.worked_example()
    inputs, outputs = mlp.forward(ex["weights"], ex["x"])
    deltas, grads = mlp.backward(ex["weights"], outputs, ex["target"])
    np.testing.assert_allclose(grads[2], -np.outer(deltas[2], outputs[2]))
    new, updates = mlp.momentum_step(ex["weights"], grads, ex["lr"], ex["momentum"])
    # The tutorial adds Delta w = lr * delta_j * O_i; we subtract lr * dE/dw: the same numbers.
    np.testing.assert_allclose(updates[0], ex["lr"] * np.outer(deltas[0], outputs[0]), rtol=1e-15)
    assert worked_step()["E"] == pytest.approx(0.5 * (0.9 - outputs[-1][0]) ** 2)


def test_second_step_adds_momentum_times_previous_update():
    ex = mlp.worked_example()
    first = mlp.trace_step(ex["weights"], ex["x"], ex["target"], ex["lr"], ex["momentum"])
    second = mlp.trace_step(first["new_weights"], ex["x"], ex["target"], ex["lr"], ex["momentum"],
                            prev_updates=first["updates"])
    for key, update in second["delta_w"].items():
        expected = -ex["lr"] * second["grad"][key] + ex["momentum"] * first["delta_w"][key]
        assert update == pytest.approx(expected, rel=1e-12, abs=1e-18)
    assert second["E"] < first["E"]


def test_named_weights_round_trip():
    ex = mlp.worked_example()
    named = mlp.named_weights(ex["weights"])
    assert named[(1, 3)] == -1.0 and named[(7, 8)] == -0.22 and len(named) == 14
    rebuilt = mlp.weights_from_named(named)
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt, ex["weights"]))


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=seeds)
def test_backward_matches_central_differences(sizes, seed):
    rng = np.random.default_rng(seed)
    weights = {str(l): rng.standard_normal((sizes[l + 1], sizes[l])) for l in range(len(sizes) - 1)}
    x, target = rng.standard_normal(sizes[0]), rng.random(sizes[-1])

    def loss(w):
        _, outputs = mlp.forward(list(w.values()), x)
        return 0.5 * float(np.sum((target - outputs[-1]) ** 2))

    _, outputs = mlp.forward(list(weights.values()), x)
    _, grads = mlp.backward(list(weights.values()), outputs, target)
    report = check_gradients(loss, weights, dict(zip(weights, grads)))
    assert report.passed(1e-6), str(report)


def test_bad_inputs():
    ex = mlp.worked_example()
    with pytest.raises(ValueError, match=r"x has shape \(3,\), expected \(2,\)"):
        mlp.forward(ex["weights"], np.zeros(3))
    with pytest.raises(ValueError, match="x contains 1 NaN or inf"):
        mlp.forward(ex["weights"], np.array([0.6, np.nan]))
    _, outputs = mlp.forward(ex["weights"], ex["x"])
    with pytest.raises(ValueError, match=r"target has shape \(2,\), expected \(1,\)"):
        mlp.backward(ex["weights"], outputs, np.zeros(2))
    bad = [ex["weights"][0], ex["weights"][1][:, :2], ex["weights"][2]]
    with pytest.raises(ValueError, match=r"weight matrix has shape \(2, 2\), expected \(any, 3\)"):
        mlp.forward(bad, ex["x"])
