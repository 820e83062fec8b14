"""Imported by Dask's forkserver before it forks a LocalCluster's workers: what every
sandboxed kernel start needs and no run changes (``kernel.warm_up``) is worked out here
once, and every worker forked afterwards inherits it."""
import os

from .kernel import warm_up

if os.environ.get("COURSE_SANDBOX") != "0":
    warm_up()
