"""How long the book takes to build: clean, cached, and the floor set by the notebooks.

    .venv/bin/python bench/book.py        (part of `make bench`)

One run, on a copy of the book's sources in a temporary folder (so your own _build/ is
neither used nor disturbed), exactly as `make book` builds it:

1. clean build: empty execution cache, every chapter runs;
2. cached rebuild, nothing changed: what a second `make book` costs (best of 3);
3. cached rebuild that re-reads every page (`--all`, what follows a failed build);
4. the sum of the notebooks' own execution times, as jupyter-cache recorded them in step 1
   (kernel start included). A clean build cannot be faster than this sum; the rest of the
   clean build time is Sphinx (reading, writing pages, copying MathJax and images).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tools.build_book import BuildResult, build, copy_book_sources  # noqa: E402

def timed_build(source: Path, label: str, *, fresh: bool = False) -> BuildResult:
    result = build(source, fresh=fresh, echo=False)
    if not result.ok:
        print(f"{label}: the build FAILED (run `make book` to see why):")
        for line in result.problems:
            print("  " + line)
        sys.exit(1)
    return result


def notebook_execution_seconds(source: Path) -> dict[str, float]:
    """Execution time of each notebook in the jupyter-cache of a book built from scratch."""
    from jupyter_cache import get_cache

    cache = get_cache(source / "_build" / ".jupyter_cache")
    return {
        Path(record.uri).name: record.data["execution_seconds"]
        for record in cache.list_cache_records()
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-book-") as scratch:
        source = Path(scratch)
        copy_book_sources(source, REPO)

        clean = timed_build(source, "clean build")
        executions = notebook_execution_seconds(source)
        cached = min((timed_build(source, "cached rebuild") for _ in range(3)),
                     key=lambda result: result.seconds)
        reread = timed_build(source, "cached rebuild (--all)", fresh=True)

    floor = sum(executions.values())
    total_label = "sum: the floor of a clean build"
    width = max(len(total_label), *map(len, executions))
    print("Per-chapter execution time (jupyter-cache, kernel start included):")
    for path, seconds in sorted(executions.items()):
        print(f"  {path:<{width}}  {seconds:6.1f} s")
    print(f"  {total_label:<{width}}  {floor:6.1f} s")
    print()
    print(f"clean build                         {clean.seconds:6.1f} s"
          f"   ({clean.seconds - floor:.1f} s above the floor: Sphinx's own work)")
    print(f"cached rebuild, nothing changed     {cached.seconds:6.1f} s"
          f"   (best of 3; {clean.seconds / cached.seconds:.0f}x faster than clean)")
    print(f"cached rebuild, every page re-read  {reread.seconds:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
