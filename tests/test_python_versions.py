"""The pinned set (pyproject.toml + constraints.txt) resolves on every supported Python.

For each interpreter found on this machine between 3.11.2 (Debian 12's system Python)
and 3.13, a fresh venv is made as `make` makes it (venv, then the newest pip) and pip
resolves the whole pinned set without installing it (``--dry-run``). torch, the largest
wheel, is resolved on its own with ``--no-deps``: its CUDA libraries on Linux are
torch's own requirements, not pins of ours.

Run with ``make test-pythons`` (it needs the package index and takes a few minutes).
"""
from __future__ import annotations

import concurrent.futures as cf
import glob
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
OLDEST, NEWEST = Version("3.11.2"), Version("3.13.99")

pytestmark = pytest.mark.pythons


def interpreters() -> dict[Version, str]:
    """{version: path} of the Pythons on this machine in the supported range."""
    paths = {"/usr/bin/python3", sys.executable}
    paths |= {p for v in ("3.11", "3.12", "3.13") if (p := shutil.which(f"python{v}"))}
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    paths |= set(glob.glob(os.path.join(pyenv, "versions", "3.1[1-3]*", "bin", "python")))
    found = {}
    for p in sorted(paths):
        try:
            out = subprocess.run([p, "-c", "import platform, venv; print(platform.python_version())"],
                                 capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if out.returncode == 0 and OLDEST <= Version(out.stdout.strip()) <= NEWEST:
            found.setdefault(Version(out.stdout.strip()), p)
    return found


def pinned_requirements() -> tuple[list[str], list[str]]:
    """(everything `make` installs except torch, [torch]) from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, items in project["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("bptt-course")]
    torch = [r for r in reqs if Requirement(r).name == "torch"]
    return [r for r in reqs if r not in torch], torch


def resolve(python: str, venv: Path) -> tuple[dict, dict]:
    """pip's install reports {name: version} for the pinned set, and for torch alone."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run(pip + ["install", "--quiet", "--upgrade", "pip"], check=True, timeout=300,
                   capture_output=True)
    rest, torch = pinned_requirements()
    reports = []
    for reqs, extra in ((rest, []), (torch, ["--no-deps"])):
        report = venv / f"report-{len(reports)}.json"
        proc = subprocess.run(pip + ["install", "--dry-run", "--ignore-installed", "--quiet",
                                     "--report", str(report), "-c", "constraints.txt",
                                     *extra, *reqs],
                              cwd=REPO, capture_output=True, text=True, timeout=900)
        errors = "\n".join(ln for ln in proc.stderr.splitlines() if "is ignored" not in ln)
        assert proc.returncode == 0, f"{python}: pip could not resolve the pins:\n{errors}"
        installs = json.loads(report.read_text())["install"]
        reports.append({canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                        for i in installs})
    return reports[0], reports[1]


def test_pinned_set_resolves_on_every_supported_python(tmp_path):
    found = interpreters()
    assert Version("3.11.2") in found or not Path("/usr/bin/python3").exists(), found
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins.setdefault(canonicalize_name(req.name), []).append(req)
    with cf.ThreadPoolExecutor(len(found)) as pool:
        jobs = {v: pool.submit(resolve, p, tmp_path / f"venv-{v}") for v, p in found.items()}
        results = {v: job.result() for v, job in jobs.items()}
    for version, (rest, torch) in results.items():
        env = {"python_full_version": str(version),
               "python_version": f"{version.major}.{version.minor}"}
        for name, got in {**rest, **torch}.items():
            applicable = [r for r in pins.get(name, [])
                          if r.marker is None or r.marker.evaluate(env)]
            assert applicable, f"Python {version}: {name} {got} is not pinned in constraints.txt"
            assert any(got in r.specifier for r in applicable), (version, name, got)
        for req in pinned_requirements()[0]:
            assert canonicalize_name(Requirement(req).name) in rest, (version, req)
        assert torch.get("torch"), version
    print(", ".join(f"Python {v}: {len(r[0]) + len(r[1])} packages" for v, r in
                    sorted(results.items())))


def test_the_student_install_leaves_out_the_book_and_the_grading_tools(tmp_path):
    """`make student` (pip's `.[student]`) brings what the exercises and the self-check
    run on, and neither the book's toolchain nor nbgrader nor the test tools."""
    report = tmp_path / "student.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                           "--ignore-installed", "--quiet", "--report", str(report),
                           "-c", "constraints.txt", ".[student]"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    names = {canonicalize_name(i["metadata"]["name"])
             for i in json.loads(report.read_text())["install"]}
    assert {"numpy", "matplotlib", "jupyterlab", "ipykernel", "nbclient", "nbformat"} <= names
    unwanted = {"jupyter-book", "sphinx", "myst-nb", "nbgrader", "torch", "pytest"}
    assert not names & unwanted, sorted(names & unwanted)
