"""course_lib.judging: the feedback text states the tolerance it applied."""

import numpy as np

from course_lib import judging


def message(ref, given, noise=None):
    leaf_noise = None if noise is None else ("leaf", noise)
    (m,) = judging.mismatches(("leaf", ref), ("leaf", given), judging.RTOL, judging.ATOL,
                              noise=leaf_noise)
    return judging.mismatch_text(m, ("dW",), show_values=True)


def test_the_allowed_share_of_the_largest_entry_is_the_one_applied():
    ref = np.array([1.0, 2.0])
    plain = message(ref, ref + 0.01)
    assert "allowed 0.0002 (0.0001 of its largest expected entry, 2)" in plain, plain
    # With the float32 allowance the tolerance is 11 times larger: the text says so.
    widened = message(ref, ref + 0.01, noise=np.full(2, 1e-4))
    assert "allowed 0.0022 (0.0011 of its largest expected entry, 2)" in widened, widened
    assert "about 1e-4" not in widened
