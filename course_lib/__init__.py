"""course_lib: the NumPy RNN library of *Backpropagation Through Time from scratch*.

Modules: activations, losses, mlp (chapter 1), rnn (chapter 3), truncation
(chapter 4), charlm (chapter 6), gradcheck, optim, data. Conventions: see course_lib.rnn and the
book's notation page.
"""

from . import activations, charlm, data, gradcheck, losses, mlp, optim, rnn, truncation

__all__ = ["activations", "charlm", "data", "gradcheck", "losses", "mlp", "optim", "rnn", "truncation"]
