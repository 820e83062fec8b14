# Two commands do all set-up on a fresh machine: `make book` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
# Any Python from 3.11.2 to 3.13 (e.g. `make test PYTHON=python3.12`)
PYTHON ?= python3
PY := $(VENV)/bin/python
# Stamps make set-up run once, and again only when the pinned requirements change.
PY_STAMP := $(VENV)/.installed
SYS_STAMP := $(VENV)/.system-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: book serve test grade bench clean student

$(PY_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { \
	  $(PYTHON) -c 'import sys; sys.exit(not (3, 11, 2) <= sys.version_info[:3] < (3, 14))' || { \
	    echo "$(PYTHON) is $$($(PYTHON) -V 2>&1): Python 3.11.2 to 3.13 is needed (make PYTHON=python3.12 ...)"; exit 1; }; \
	  $(PYTHON) -m venv $(VENV) || { \
	    echo "could not create $(VENV): on Debian/Ubuntu install python3-venv (apt-get install python3-venv)"; exit 1; }; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Debian packages for the browser test (chromium), the grading sandbox (bubblewrap;
# util-linux's setpriv, prlimit and runuser) and the PostgreSQL gradebook tests
# (postgresql: the tests start a server of their own on a free port, so a cluster the
# package may start on 5432 does not matter).
# (a Makefile that lists a new package checks again)
$(SYS_STAMP): Makefile | $(PY_STAMP)
	@command -v chromium >/dev/null && command -v bwrap >/dev/null && \
	  command -v setpriv >/dev/null && command -v prlimit >/dev/null && \
	  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium bubblewrap \
	    util-linux postgresql; }
	touch $@

# What a student needs for the exercises, nothing else: NumPy, matplotlib, JupyterLab,
# course_lib and the self-check (`python -m grader check NOTEBOOK`).
student:
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[student]'
	@echo "Start JupyterLab with: $(VENV)/bin/jupyter lab exercises/"

book: $(PY_STAMP)
	$(PY) -m tools.build_book

serve:
	@test -f _build/html/index.html || { echo "No built book: run 'make book' first."; exit 1; }
	$(PY) -m http.server --bind 127.0.0.1 --directory _build/html 8000

# The test files run in one process more than there are cores (tests/conftest.py says how
# they are grouped): many of them wait on kernels, time limits, servers or the browser,
# and the extra process fills that time (on 2 cores: 2 processes 5 min 52 s with the
# machine 90 % busy, 3 processes 5 min 7 s with it 96 % busy). Every run ends with its 15
# slowest tests, so a test that grows slow is seen at once.
TEST_PROCESSES ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(PY_STAMP) $(SYS_STAMP)
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder --durations=15

# The pinned set resolves on every Python from 3.11.2 to 3.13 found on this machine
# (a fresh venv each, pip --dry-run: needs the package index, takes minutes).
.PHONY: test-pythons
test-pythons: $(PY_STAMP)
	$(PY) -m pytest -m pythons tests/test_python_versions.py

grade: $(PY_STAMP) $(SYS_STAMP)
	$(PY) -m grader grade

bench: $(PY_STAMP)
	$(PY) bench/bptt.py
	$(PY) bench/book.py
	$(PY) bench/grade.py

clean:
	rm -rf _build
