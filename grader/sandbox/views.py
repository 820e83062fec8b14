"""What the grading kernel may import: allowlisted views of site-packages and course_lib.

Nothing is importable in the kernel unless it is listed here:

* ``KERNEL_DISTRIBUTIONS`` and their dependency closure (read from the installed
  packages' metadata, markers evaluated for this interpreter). Every site-packages
  folder of the interpreter is covered by an empty tmpfs in the sandbox and only the
  files of these distributions are bound back in (``site_binds``): torch, pytest,
  nbgrader and the grader package do not exist for the kernel.
* ``COURSE_LIB_ALLOWED``: per course_lib module, the names the kernel may use. The
  kernel imports a generated copy of course_lib (``course_lib_view``) in which every
  other public name is a placeholder that raises ``ReferenceUnavailableError``, and
  private helpers only allowed names need are kept. The real source files are not
  in the sandbox, so they cannot be read and executed either. A module missing
  from the table keeps no public name (a new module is unavailable until listed).

Why these names: every function that computes, or trivially assembles, a quantity
an exercise of grader/exercises grades is unavailable: the MLP forward/backward and
momentum step, softmax, log-softmax, the softmax Jacobian, both losses and their
gradients, every RNN pass (steps, hidden states, outputs, loss gradient, backward,
BPTT, gradient norms, sampling), numerical gradients, TBPTT, the optimizers and
norm clipping, and for the language model the cutting of ids into streams
(data.batchify, charlm.stream_task), perplexity (also the n-gram
one and evaluate), the tempered softmax and text sampling. What stays is data,
initialisation, validation, activations (the assignments hand them out), the
train/validation split and the record-writing ``checks``.
``check_references`` refuses a registry whose references call an allowed name.
"""
from __future__ import annotations

import ast
import glob
import hashlib
import importlib.util
import inspect
import os
import re
import shutil
import site
import sys
import tempfile
import textwrap
from pathlib import Path

KERNEL_DISTRIBUTIONS = ("numpy", "matplotlib", "ipykernel")

ALL = "*"
COURSE_LIB_ALLOWED: dict[str, str | frozenset] = {
    "course_lib": ALL,
    "course_lib.checks": ALL,
    "course_lib.validation": ALL,
    # batchify cuts ids into time-major streams (the graded make_streams)
    "course_lib.data": frozenset({"adding_problem", "delayed_copy", "delayed_xor", "one_hot",
                                  "CORPORA", "load_corpus", "CharVocab", "encode", "decode"}),
    "course_lib.activations": ALL,
    "course_lib.losses": frozenset({"LOSSES", "check_loss_name"}),
    "course_lib.mlp": frozenset({"LAYER_SIZES", "worked_example", "node_numbers",
                                 "weights_from_named", "named_weights"}),
    "course_lib.rnn": frozenset({"PARAM_NAMES", "MODES", "init_params", "check_params",
                                 "check_inputs", "check_targets"}),
    "course_lib.gradcheck": frozenset({"rel_error", "GradCheckReport"}),
    "course_lib.optim": frozenset(),
    "course_lib.truncation": frozenset(),
    "course_lib.charlm": frozenset({"split"}),
}

_GRADING_MODULE = '''"""Generated for the grading sandbox: placeholders of unavailable names."""


class ReferenceUnavailableError(RuntimeError):
    """A course_lib function that computes a graded quantity was called while grading."""


def unavailable(dotted):
    def placeholder(*args, **kwargs):
        raise ReferenceUnavailableError(
            f"{dotted} is unavailable while grading (it computes a graded quantity): "
            "implement it yourself")
    placeholder.__name__ = dotted.rsplit(".", 1)[1]
    placeholder.__qualname__ = placeholder.__name__
    return placeholder
'''


# ---------------------------------------------------------------------------- site-packages
def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_closure(roots=KERNEL_DISTRIBUTIONS) -> dict:
    """{canonical name: Distribution} of ``roots`` and everything they require."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict = {}
    todo = list(roots)
    while todo:
        name = _canonical(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in map(_canonical, roots):
                raise RuntimeError(f"{name} is not installed: the grading kernel needs it")
            continue  # an optional dependency that is not installed
        found[name] = dist
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return found


def _dist_entries(dist) -> set[tuple[str, str]]:
    """(site dir, top-level entry) pairs that hold a distribution's files."""
    base = os.path.realpath(str(dist.locate_file("")))
    out = set()
    for f in dist.files or []:
        top = Path(f).parts[0] if Path(f).parts else ""
        if top and top not in ("..", "__pycache__") and not top.endswith(".pth"):
            out.add((base, top))
    info = getattr(dist, "_path", None)
    if info is not None:
        out.add((os.path.realpath(str(Path(info).parent)), Path(info).name))
    return {(b, t) for b, t in out if os.path.lexists(os.path.join(b, t))}


def site_dirs() -> list[str]:
    """Every site-packages / dist-packages folder this interpreter could reach."""
    cands = set(site.getsitepackages([sys.prefix, sys.base_prefix]))
    cands |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    cands |= set(glob.glob("/usr/lib/python3*/*-packages") +
                 glob.glob("/usr/local/lib/python3*/*-packages"))
    return sorted({os.path.realpath(p) for p in cands if os.path.isdir(p)})


def site_binds() -> tuple[list[str], list[str]]:
    """(site dirs to cover with a tmpfs, allowed paths to bind back read-only)."""
    entries: set = set()
    for dist in distribution_closure().values():
        entries |= _dist_entries(dist)
    covered = site_dirs()
    for base, _ in entries:
        if base not in covered:
            covered.append(base)
    return sorted(covered), sorted(os.path.join(b, t) for b, t in entries)


# ---------------------------------------------------------------------------- course_lib
def course_lib_dir() -> str:
    spec = importlib.util.find_spec("course_lib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("course_lib is not importable: cannot build the grading view")
    return os.path.realpath(list(spec.submodule_search_locations)[0])


def _defined(node) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def restrict_module(source: str, module: str, allowed) -> str:
    """The module's source with only ``allowed`` public names (and the private helpers
    they use); every other public name becomes a placeholder that raises."""
    if allowed == ALL:
        return source
    tree = ast.parse(source)
    body = tree.body
    doc = body[:1] if ast.get_docstring(tree) is not None else []
    defs = [n for n in body[len(doc):] if _defined(n)]
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    future = [n for n in imports if getattr(n, "module", None) == "__future__"]
    keep: list = []
    needed = set(allowed) | {"__all__"}
    changed = True
    while changed:  # allowed names, then the private names they use, transitively
        changed = False
        for node in defs:
            names = _defined(node)
            if node in keep or not names & needed:
                continue
            keep.append(node)
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            new = {u for u in used if u.startswith("_")} - needed
            needed |= new
            changed = True
    public = sorted({n for d in defs for n in _defined(d)
                     if not n.startswith("_") and n not in allowed})
    header = (ast.unparse(ast.Module(body=doc, type_ignores=[])) + "\n" if doc else "")
    lines = [header] + [ast.unparse(n) + "\n" for n in future]
    lines += ["from course_lib._grading import unavailable as _unavailable\n"]
    lines += [ast.unparse(n) + "\n" for n in imports if n not in future]
    lines += ["\n" + ast.unparse(n) + "\n" for n in body if n in keep]
    lines += [f"{name} = _unavailable({module + '.' + name!r})\n" for name in public]
    return "".join(lines)


def _module_name(view: Path, py: Path) -> str:
    parts = ["course_lib", *py.relative_to(view).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def course_lib_view(dest_root: str) -> str:
    """Build (once per content) the allowlisted course_lib under ``dest_root``; returns
    the folder that holds it (the kernel's PYTHONPATH entry)."""
    src = course_lib_dir()
    h = hashlib.sha256(repr(sorted((k, sorted(v)) for k, v in COURSE_LIB_ALLOWED.items()))
                       .encode())
    for p in sorted(Path(src).rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes())
    dest = os.path.join(dest_root, "course_lib-" + h.hexdigest()[:16])
    if os.path.isdir(dest):
        return dest
    os.makedirs(dest_root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=dest_root)
    view = Path(tmp, "course_lib")
    shutil.copytree(src, view, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    symlinks=False)
    for py in view.rglob("*.py"):
        module = _module_name(view, py)
        py.write_text(restrict_module(py.read_text(), module,
                                      COURSE_LIB_ALLOWED.get(module, frozenset())))
    (view / "_grading.py").write_text(_GRADING_MODULE)
    for root, dirs, files in os.walk(tmp):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    try:
        os.rename(tmp, dest)
    except OSError:  # another worker built the same view first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def allowed(dotted: str) -> bool:
    module, _, name = dotted.rpartition(".")
    names = COURSE_LIB_ALLOWED.get(module, frozenset())
    return names == ALL or name in names


def _course_lib_names(fn) -> set[str]:
    """``fn`` itself if it is a course_lib function, else the dotted course_lib
    functions named in its body (``mod.attr`` chains, names)."""
    if (getattr(fn, "__module__", None) or "").startswith("course_lib"):
        return {f"{fn.__module__}.{fn.__name__}"}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return set()
    env = getattr(fn, "__globals__", {})

    def resolve(node):
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            base = resolve(node.value)
            return getattr(base, node.attr, None) if base is not None else None
        return None

    out = set()
    for node in ast.walk(tree):
        obj = resolve(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
        mod = getattr(obj, "__module__", "") or ""
        if callable(obj) and mod.startswith("course_lib"):
            out.add(f"{mod}.{obj.__name__}")
    return out


def check_references(exercises: dict) -> None:
    """Refuse to grade when an exercise's reference calls a course_lib name the kernel
    may use: that name would hand students the graded quantity."""
    leaks = sorted({(f"{a}/{n}", d) for (a, n), ex in exercises.items()
                    for d in _course_lib_names(getattr(ex, "reference", None))
                    if allowed(d)})
    if leaks:
        raise RuntimeError("the grading kernel's course_lib allowlist gives away graded "
                           "quantities: " + "; ".join(f"{e} uses {d}" for e, d in leaks)
                           + " (remove them from COURSE_LIB_ALLOWED in "
                           "grader/sandbox/views.py)")
