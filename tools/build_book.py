"""Build the course book into _build/html: `make book`, i.e. `python -m tools.build_book`.

Five steps, each a function below:

1. `prepare_mathjax`: copy MathJax 3 (from the pip package django-static-mathjax) into
   _build/.mathjax/mathjax/. _config.yml lists that folder in `html_static_path` and sets
   `mathjax_path`, so every page loads MathJax from the book itself: math renders offline.
2. `invalidate_stale_cache`: the execution cache (jupyter-cache) keys each chapter on its
   code cells only. The chapters' outputs also depend on course_lib/ and on the pinned
   packages, so when those change the cache is cleared and every chapter runs again.
3. `execute_stale_chapters`: the chapters the cache does not hold run at the same time,
   one process per core, and go into the cache; Sphinx then takes their outputs from
   it (it would run them one after the other). Each chapter's wall time and CPU time (its
   kernel's) are written to _build/chapter_runs.json: this build's record. A chapter that
   fails beside another runs again alone (its error printed); one that fails alone (too)
   is left to the build, which runs it again and reports the error.
4. `run_jupyter_book`: `jupyter-book build SOURCE -W -n --keep-going`. Any Sphinx warning
   or nitpicky missing reference fails the build (all of them are listed first), and so
   does any cell error (`raise_on_error` in _config.yml).
5. Print where the book is and how to look at it.

Sphinx only re-reads pages that changed, so a warning in an unchanged page is not printed
again on the next run. To keep "the build fails on any warning" true on every run, the
script re-reads all pages (`--all`; the notebooks still come from the cache) unless the
previous build succeeded. Run with `--all` to force that.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# What the pages load from MathJax's es5 folder: the combined TeX-to-CommonHTML component,
# the fonts it fetches, the TeX extensions it autoloads (\boldsymbol, \cancel, ...), and what
# the right-click menu loads on demand (accessibility explorer, speech rule engine).
MATHJAX_PARTS = ("tex-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y", "sre")
MATHJAX_STAMP = ".copied_from"  # a dotfile: Sphinx does not copy it into _static

# Everything the chapters' outputs depend on besides their own code (relative to SOURCE).
CACHE_DEPENDENCIES = ("course_lib", "constraints.txt")
# This build's record of the chapters it ran: {document: {"wall_seconds", "cpu_seconds"}}
CHAPTER_RUNS = "chapter_runs.json"

# What a copy of the book needs: its configuration, pages, the notebooks it offers for
# download, the bibliography, and what decides whether cached outputs are still valid.
BOOK_SOURCES = ("_config.yml", "_toc.yml", "references.bib", "book", "exercises",
                "course_lib", "constraints.txt")
COPY_IGNORE = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "_build")

# Sphinx reports problems as "file:line: WARNING: message" (or ERROR/CRITICAL).
PROBLEM_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL): ")
ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class BuildResult:
    returncode: int
    seconds: float
    html_dir: Path
    problems: list[str] = field(default_factory=list)  # warning/error lines of the log

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def copy_book_sources(destination: Path, source: Path = REPO_ROOT) -> Path:
    """Copy what the book is built from into `destination` (a scratch build folder)."""
    for name in BOOK_SOURCES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, destination / name, ignore=COPY_IGNORE)
        elif path.is_file():
            shutil.copy2(path, destination / name)
    return destination


def mathjax_source() -> Path:
    """The es5 folder of MathJax 3 installed by the pip package django-static-mathjax."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "MathJax is missing: install the book's dependencies with `make book` "
            "(pip package django-static-mathjax)."
        )
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise SystemExit(f"MathJax 3 not found at {es5}: reinstall django-static-mathjax.")
    return es5


def prepare_mathjax(build_dir: Path) -> Path:
    """Copy MathJax into build_dir/.mathjax/mathjax/ (once) and return build_dir/.mathjax."""
    es5 = mathjax_source()
    static_root = build_dir / ".mathjax"
    target = static_root / "mathjax"
    stamp = static_root / MATHJAX_STAMP
    if stamp.is_file() and stamp.read_text() == str(es5):
        return static_root  # already copied from this installation
    shutil.rmtree(static_root, ignore_errors=True)
    for part in MATHJAX_PARTS:
        src, dst = es5 / part, target / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    stamp.write_text(str(es5))
    return static_root


def dependencies_key(source: Path) -> str:
    """A hash of every file the chapters depend on besides their own code."""
    digest = hashlib.sha256()
    for name in CACHE_DEPENDENCIES:
        root = source / name
        files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(source).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def invalidate_stale_cache(build_dir: Path, key: str) -> bool:
    """Clear the execution cache if it was made with other dependencies; True if cleared."""
    cache, key_file = build_dir / ".jupyter_cache", build_dir / ".jupyter_cache.key"
    stale = cache.exists() and (not key_file.is_file() or key_file.read_text() != key)
    if stale:
        shutil.rmtree(cache)
    key_file.write_text(key)  # whatever gets cached from now on is made with these files
    return stale


def toc_notebooks(source: Path) -> list[Path]:
    """The pages of _toc.yml that are notebooks (MyST Markdown notebooks or .ipynb)."""
    import yaml
    from myst_nb.core.read import is_myst_markdown_notebook

    def files(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    yield node[key]
            for value in node.values():
                yield from files(value)
        elif isinstance(node, list):
            for item in node:
                yield from files(item)

    pages = []
    for name in dict.fromkeys(files(yaml.safe_load((source / "_toc.yml").read_text()))):
        for path in (source / f"{name}.md", source / f"{name}.ipynb", source / name):
            if path.is_file():
                if path.suffix == ".ipynb" or is_myst_markdown_notebook(path.read_text()):
                    pages.append(path)
                break
    return pages


def read_notebook(path: Path):
    """The notebook as Sphinx (myst-nb) reads it: same code cells, same cache key."""
    import nbformat
    from myst_nb.core.read import myst_nb_reader_plugin

    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    return myst_nb_reader_plugin(str(path))


def execute_chapter(path: Path, timeout: int):
    """Run one chapter in a fresh kernel, in its own folder, as the build would.
    Returns (path, executed notebook, wall seconds, CPU seconds of the kernel, error)."""
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = read_notebook(path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # this worker's reaped kernels
    result = single_nb_execution(notebook, cwd=str(path.parent), timeout=timeout,
                                 allow_errors=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    error = result.exc_string if result.err is not None else None
    return path, result.nb, result.time, cpu, error


def execute_stale_chapters(source: Path, build_dir: Path, jobs: int | None = None,
                           echo: bool = True) -> dict:
    """Run every chapter the cache does not hold, ``jobs`` at a time (default: one per
    core), and cache the ones that succeed; write and return this build's record."""
    import yaml
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    config = yaml.safe_load((source / "_config.yml").read_text()).get("execute", {})
    cache = get_cache(str(build_dir / ".jupyter_cache"))
    stale = []
    for path in toc_notebooks(source):
        try:
            cache.match_cache_notebook(read_notebook(path))
        except KeyError:
            stale.append(path)
    runs = {}
    if stale:
        jobs = min(len(stale), jobs or os.cpu_count() or 1)
        if echo:
            print(f"Running {len(stale)} chapter(s), {jobs} at a time", flush=True)
        timeout = config.get("timeout", 30)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(execute_chapter, stale, [timeout] * len(stale)))
        # a chapter that failed beside another runs again alone (one that ran alone
        # already does not); one that fails alone is left to the build, which shows the error
        failed = [(path, error) for path, *_, error in done
                  if error is not None] if jobs > 1 else []
        for path, error in failed:
            print(f"  {path.relative_to(source).as_posix()} failed beside another chapter, "
                  f"runs again alone: {error.strip().splitlines()[-1][:300]}", flush=True)
        done += [execute_chapter(path, timeout) for path, _ in failed]
        for path, notebook, wall, cpu, error in done:
            if error is not None:
                continue
            name = path.relative_to(source).as_posix()
            cache.cache_notebook_bundle(
                CacheBundleIn(notebook, str(path), data={"execution_seconds": wall}),
                check_validity=False, overwrite=True)
            runs[name] = {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
            if echo:
                print(f"  {name}: {wall:.1f} s ({cpu:.1f} s of CPU)", flush=True)
    (build_dir / CHAPTER_RUNS).write_text(json.dumps(runs, indent=1))
    return runs


def run_jupyter_book(source: Path, *, fresh: bool, echo: bool = True) -> tuple[int, list[str]]:
    """Run the strict build; return its exit code and the warning/error lines of its log."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"  # the venv's, like python
    if not jupyter_book.exists():
        raise SystemExit(f"{jupyter_book} is missing: run `make book`, which installs it.")
    command = [str(jupyter_book), "build", str(source), "-W", "-n", "--keep-going"]
    if fresh:
        command.append("--all")
    problems = []
    with subprocess.Popen(
        command, cwd=source, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, bufsize=1,
    ) as process:
        for line in process.stdout:
            if echo:
                print(line, end="", flush=True)
            plain = ANSI_COLOR.sub("", line).rstrip()
            if PROBLEM_LINE.search(plain):
                problems.append(plain)
    return process.returncode, problems


def build(source: Path = REPO_ROOT, *, fresh: bool = False, echo: bool = True) -> BuildResult:
    """Build the book whose _config.yml and _toc.yml are in `source`."""
    start = time.perf_counter()
    source = source.resolve()
    build_dir = source / "_build"
    build_dir.mkdir(exist_ok=True)
    ok_stamp = build_dir / ".last_build_succeeded"

    prepare_mathjax(build_dir)
    if invalidate_stale_cache(build_dir, dependencies_key(source)):
        print("course_lib or the pinned packages changed: every chapter runs again.")
        fresh = True
    fresh = fresh or not ok_stamp.exists()
    ok_stamp.unlink(missing_ok=True)

    execute_stale_chapters(source, build_dir, echo=echo)
    returncode, problems = run_jupyter_book(source, fresh=fresh, echo=echo)
    seconds = time.perf_counter() - start
    if returncode == 0:
        ok_stamp.touch()
    return BuildResult(returncode, seconds, build_dir / "html", problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=REPO_ROOT,
                        help="folder with _config.yml and _toc.yml (default: the repository)")
    parser.add_argument("--all", dest="fresh", action="store_true",
                        help="re-read every page (notebooks still come from the cache)")
    args = parser.parse_args(argv)

    result = build(args.source, fresh=args.fresh)
    if not result.ok:
        print(f"\nThe book did NOT build (exit code {result.returncode}, {result.seconds:.1f} s).")
        if result.problems:
            print("Warnings and errors (each one fails the build; fix them all):")
            for line in result.problems:
                print("  " + line)
        return result.returncode or 1
    index = result.html_dir / "index.html"
    print(f"\nThe book is built ({result.seconds:.1f} s): {index}")
    print("Open that file in a browser, or run `make serve` and visit http://127.0.0.1:8000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
