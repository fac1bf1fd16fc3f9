"""The committed benchmark runs and what cites them (issue 27, part 7).

``bench/results/reference/`` had grown into a lab notebook under coded names, cited from prose
that named files which could move or vanish. Two rules keep it a set of references:

* every path under ``bench/results/`` that the docs, ``bench/``, ``src/``, ``tests/`` or
  ``deploy/capacity.json`` name exists (a glob matches something; a name a run writes, such as
  ``bench-<time>.json``, has its folder), and so does every path the docs give relative to
  ``reference/`` (``make-bench/issue12-fifth-round.json``, the way docs/performance.md names
  runs after the first full path);
* every file under ``bench/results/reference/`` is cited: by its path or a glob, either of them
  full or relative to ``reference/``, or as part of a folder below ``reference/`` that a full
  path cites as a series. A run nothing cites goes to ``bench/results/archive/``, with a line
  in its README.md.

Pure file reads: no git, no subprocess.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
REFERENCE = RESULTS / "reference"
ARCHIVE = RESULTS / "archive"

# Where a path may be named. bench/results/ itself is left out: the archive's index names the
# old paths on purpose.
SOURCES = (
    "docs/**/*",
    "bench/*.py",
    "bench/README.md",
    "src/**/*",
    "tests/**/*",
    "deploy/capacity.json",
    "README.md",
    "Makefile",
)
# A path under bench/results/, up to whitespace, a backtick, a closing bracket or a quote.
FULL = re.compile(r"bench/results/[^\s`)'\"]+")
# In Markdown, a code span that starts with a folder name: a path relative to reference/ when
# that folder is one of reference/'s.
RELATIVE = re.compile(r"`([\w-]+/[^`\s]*)`")
# A name a command writes or a shell loop fills in: bench-<time>.json, profile-{a,b}.txt, $f.
TEMPLATE = re.compile(r"[<{$]")
GLOB = re.compile(r"[*?\[]")


def sources() -> list[Path]:
    """The text files that may name a run (this one excepted: its patterns are no paths)."""
    found = {
        p
        for pattern in SOURCES
        for p in ROOT.glob(pattern)
        if p.is_file() and "__pycache__" not in p.parts
    }
    found.discard(Path(__file__).resolve())
    return sorted(found)


@cache
def references() -> dict[str, frozenset[str]]:
    """Each path named under bench/results/ (relative to the repository), and who names it.

    A path the docs give relative to reference/ is returned under its full path, with its
    naming file marked ``(relative)``: such a path cites the files it names, never a folder.
    """
    named: dict[str, set[str]] = {}
    for source in sources():
        data = source.read_bytes()
        if b"\0" in data:  # an image, not text
            continue
        text = data.decode("utf-8", errors="replace")
        where = source.relative_to(ROOT).as_posix()
        for match in FULL.finditer(text):
            named.setdefault(match.group().rstrip(".,;:"), set()).add(where)
        if source.suffix != ".md":
            continue
        for match in RELATIVE.finditer(text):
            ref = match.group(1).rstrip(".,;:")
            if (REFERENCE / ref.split("/")[0]).is_dir():
                full = (REFERENCE / ref).relative_to(ROOT).as_posix()
                named.setdefault(full, set()).add(f"{where} (relative)")
    return {ref: frozenset(where) for ref, where in named.items()}


def files_named(ref: str) -> set[Path]:
    """The files a reference names: the file, a glob's matches, or a folder's files."""
    if GLOB.search(ref):
        return {p for p in ROOT.glob(ref) if p.is_file()}
    path = ROOT / ref
    if path.is_dir():
        return {p for p in path.rglob("*") if p.is_file()}
    return {path} if path.is_file() else set()


def test_the_scan_finds_the_runs_code_and_docs_name():
    where = {w for ws in references().values() for w in ws}
    # tests/bench/test_sizing.py loads two runs; deploy/capacity.json names its source run.
    assert {
        "tests/bench/test_sizing.py",
        "deploy/capacity.json",
        "docs/performance.md",
        "docs/performance.md (relative)",
    } <= where


def test_every_path_named_under_bench_results_exists():
    missing = []
    for ref, where in sorted(references().items()):
        if TEMPLATE.search(ref):
            ok = (ROOT / TEMPLATE.split(ref, maxsplit=1)[0].rpartition("/")[0]).is_dir()
        else:
            ok = (ROOT / ref).exists() or bool(files_named(ref))
        if not ok:
            missing.append(f"{ref} (in {', '.join(sorted(where))})")
    assert not missing, "named, but no such file:\n  " + "\n  ".join(missing)


def test_every_reference_run_is_cited():
    cited: set[Path] = set()
    for ref, where in references().items():
        if TEMPLATE.search(ref):
            continue
        # A folder cites its files only when it is below reference/ (naming reference/ cites
        # no run) and a full path names it (not the overview in bench/README.md).
        path = ROOT / ref
        only_relative = all(w.endswith("(relative)") for w in where)
        if path.is_dir() and (REFERENCE not in path.parents or only_relative):
            continue
        cited |= files_named(ref)
    committed = {p for p in REFERENCE.rglob("*") if p.is_file()}
    uncited = sorted(p.relative_to(ROOT).as_posix() for p in committed - cited)
    assert not uncited, (
        "under bench/results/reference/ but cited nowhere: cite each where its figures are "
        "used, or move it (git mv) to bench/results/archive/ with a line in its README.md:\n  "
        + "\n  ".join(uncited)
    )


def test_every_archived_run_has_a_line_in_the_index():
    index = (ARCHIVE / "README.md").read_text(encoding="utf-8")
    archived = sorted(
        p.relative_to(ARCHIVE).as_posix()
        for p in ARCHIVE.rglob("*")
        if p.is_file() and p.name != "README.md"
    )
    unlisted = [name for name in archived if f"| `{name}` |" not in index]
    assert not unlisted, f"in bench/results/archive/ without a row in its README.md: {unlisted}"
