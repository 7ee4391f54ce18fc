"""Similarity across a class: which pairs of submissions share the most student-written code.

Only what students wrote is compared. From each accepted file we keep the bodies of the
homework's solution regions (``### BEGIN YOUR SOLUTION (hwN)`` ... ``### END YOUR SOLUTION``,
``autograder.authoring.markers``) that differ from the release's stub; a file whose markers
were deleted or broken falls back to the lines that are not in the release's version of it.
Provided code and stubs therefore never count, or every pair would look alike.

The comparison is ``copydetect`` (PyPI; winnowing over k-grams of normalised tokens, the
MOSS algorithm: names become V/F/O, strings S, comments and whitespace vanish, so renaming
variables and reformatting do not hide a copy). Two kinds of fingerprints are discarded, as
MOSS does: those of the release's own files (provided code, stubs), and those found in more
than ``common`` submissions (code every correct solution writes the same way, such as
``return a + b``). A pair's score is the mean of the two shares of each submission's
remaining fingerprinted code that the other one covers.

``copydetect`` is an optional dependency (``pip install -e .[course]``); the engine never
imports it. Output: ``OUT/_class/similarity.html`` (the most similar pairs, their matching
passages side by side) and ``similarity.csv`` (every pair).
"""

from __future__ import annotations

import csv
import difflib
import html
import io
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autograder.authoring.markers import MarkerError, region_bodies, syntax_for

K = 25  # copydetect's noise threshold: shorter matches (in normalised characters) never count
WINDOW = 6  # winnowing window: any match of K + WINDOW - 1 characters is always found
SUFFIX = {"python": ".py", "cpp": ".cpp"}


class SimilarityUnavailable(RuntimeError):
    """copydetect is not installed."""


@dataclass
class Document:
    """The student-written code of one submission: path -> text (of supported syntaxes)."""

    key: str  # the submission's output name
    label: str  # what the page shows (student id and name, or the submission name)
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class Pair:
    a: Document
    b: Document
    share_a: float  # of a's fingerprinted code, the part also in b
    share_b: float
    files: list[tuple[str, str, str]] = field(default_factory=list)  # path, a html, b html

    @property
    def score(self) -> float:
        return (self.share_a + self.share_b) / 2


def student_code(
    files: dict[str, bytes], blank: dict[str, bytes], tags: tuple[str, ...]
) -> dict[str, str]:
    """What the student wrote in each accepted file (see the module docstring)."""
    written: dict[str, str] = {}
    for path, data in sorted(files.items()):
        syntax = syntax_for(path)
        if syntax not in SUFFIX:
            continue
        text = data.decode("utf-8", errors="replace")
        given = blank.get(path, b"").decode("utf-8", errors="replace")
        code = _regions(text, given, syntax, path, tags)
        if code is None:  # no usable markers: everything not in the release
            code = _new_lines(text, given)
        if code.strip():
            written[path] = code
    return written


def _regions(text: str, given: str, syntax: str, path: str, tags) -> str | None:
    try:
        mine = {r: b for r, b in region_bodies(text, syntax, path).items() if r.tag in tags}
        stubs = {
            (r.tag, r.function): b
            for r, b in region_bodies(given, syntax, path).items()
            if r.tag in tags
        }
    except (MarkerError, SyntaxError, ValueError):
        return None
    if not mine:
        return None
    comment = "#" if syntax == "python" else "//"
    pieces = []
    for region, body in sorted(mine.items(), key=lambda item: item[0].begin):
        if _same(body, stubs.get((region.tag, region.function), [])):
            continue  # still the stub: nothing written
        pieces.append(f"{comment} {region.function or 'region'} (line {region.begin})")
        pieces += body
    return "\n".join(pieces) + "\n"


def _same(body: list[str], stub: list[str]) -> bool:
    return [line.strip() for line in body if line.strip()] == [
        line.strip() for line in stub if line.strip()
    ]


def _new_lines(text: str, given: str) -> str:
    ours = text.splitlines()
    matcher = difflib.SequenceMatcher(None, given.splitlines(), ours, autojunk=False)
    kept: list[str] = []
    for op, _, _, start, end in matcher.get_opcodes():
        if op in ("replace", "insert"):
            kept += ours[start:end]
    return "\n".join(kept) + "\n"


def _copydetect():
    os.environ.setdefault("MPLBACKEND", "Agg")  # copydetect imports matplotlib.pyplot
    try:
        from copydetect import CodeFingerprint, compare_files
        from copydetect.utils import highlight_overlap
    except ImportError as error:
        raise SimilarityUnavailable(
            "the similarity report needs copydetect: pip install copydetect "
            "(or pip install -e '.[course]')"
        ) from error
    return CodeFingerprint, compare_files, highlight_overlap


def compare(
    documents: list[Document], blank: dict[str, bytes], common: int | None = None
) -> list[Pair]:
    """Every pair of ``documents``, most similar first."""
    fingerprint, compare_files, highlight = _copydetect()

    def prints(path: str, text: str, boilerplate=None):
        name = "code" + SUFFIX[syntax_for(path) or "python"]
        return fingerprint(name, K, WINDOW, boilerplate=boilerplate, fp=io.StringIO(text))

    provided: dict[str, set] = {}
    for path in {p for d in documents for p in d.files}:
        given = blank.get(path, b"").decode("utf-8", errors="replace")
        provided[path] = set(prints(path, given).hashes) if given.strip() else set()
    counts: Counter = Counter()
    for document in documents:
        seen = set()
        for path, text in document.files.items():
            seen |= {(path, h) for h in prints(path, text).hashes}
        counts.update(seen)
    limit = common if common is not None else max(2, len(documents) // 5)
    shared = {}
    for path in provided:
        frequent = {h for (p, h), n in counts.items() if p == path and n > limit}
        shared[path] = sorted(provided[path] | frequent)
    final = {
        (d.key, path): prints(path, text, shared[path])
        for d in documents
        for path, text in d.files.items()
    }
    pairs = []
    for a, b in itertools.combinations(documents, 2):
        covered_a = covered_b = total_a = total_b = 0.0
        views = []
        for path in sorted(set(a.files) | set(b.files)):
            fa, fb = final.get((a.key, path)), final.get((b.key, path))
            total_a += fa.token_coverage if fa else 0
            total_b += fb.token_coverage if fb else 0
            if fa is None or fb is None:
                continue
            overlap, (sim_a, sim_b), (slices_a, slices_b) = compare_files(fa, fb)
            if not overlap:
                continue
            covered_a += sim_a * fa.token_coverage
            covered_b += sim_b * fb.token_coverage
            left = highlight(fa.raw_code, slices_a, "<mark>", "</mark>", escape_html=True)[0]
            right = highlight(fb.raw_code, slices_b, "<mark>", "</mark>", escape_html=True)[0]
            views.append((path, left, right))
        pairs.append(
            Pair(
                a,
                b,
                covered_a / total_a if total_a else 0.0,
                covered_b / total_b if total_b else 0.0,
                views,
            )
        )
    pairs.sort(key=lambda p: (-p.score, p.a.key, p.b.key))
    return pairs


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 4px 8px; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; font-size: 0.85em; }
mark { background: #ffd27f; }
"""


def render_page(title: str, pairs: list[Pair], top: int, documents: int) -> str:
    esc = html.escape
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>",
        f"<p>{documents} submissions, {len(pairs)} pairs; student-written regions only "
        "(provided code, stubs and code most submissions share are left out). Winnowing "
        f"fingerprints by copydetect (k = {K}, window {WINDOW}). A high score is a reason to "
        "look, not a verdict.</p>",
        "<table><tr><th>#</th><th>submission A</th><th>submission B</th><th>A in B</th>"
        "<th>B in A</th><th>score</th></tr>",
    ]
    shown = pairs[:top]
    for rank, pair in enumerate(shown, start=1):
        parts.append(
            f"<tr><td><a href='#pair-{rank}'>{rank}</a></td><td>{esc(pair.a.label)}</td>"
            f"<td>{esc(pair.b.label)}</td><td>{pair.share_a:.0%}</td>"
            f"<td>{pair.share_b:.0%}</td><td>{pair.score:.0%}</td></tr>"
        )
    parts.append("</table>")
    for rank, pair in enumerate(shown, start=1):
        parts.append(
            f"<h2 id='pair-{rank}'>{rank}. {esc(pair.a.label)} — {esc(pair.b.label)} "
            f"({pair.score:.0%})</h2>"
        )
        if not pair.files:
            parts.append("<p>No matching passages.</p>")
        for path, left, right in pair.files:
            parts.append(
                f"<h3>{esc(path)}</h3><div class='side'><div><b>{esc(pair.a.label)}</b>"
                f"<pre>{left}</pre></div><div><b>{esc(pair.b.label)}</b>"
                f"<pre>{right}</pre></div></div>"
            )
    parts.append("</body></html>")
    return "".join(parts)


def write_report(folder: Path, title: str, pairs: list[Pair], top: int, documents: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "similarity.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "a_in_b", "b_in_a", "score"])
        for pair in pairs:
            writer.writerow(
                [
                    pair.a.label,
                    pair.b.label,
                    round(pair.share_a, 4),
                    round(pair.share_b, 4),
                    round(pair.score, 4),
                ]
            )
    page = folder / "similarity.html"
    page.write_text(render_page(title, pairs, top, documents), encoding="utf-8")
    return page


def class_similarity(
    hw: str,
    out_dir: Path,
    paths: list[str | Path] | None = None,
    course=None,
    top: int = 20,
    common: int | None = None,
) -> Path:
    """``autograder similarity``: compare the submissions of ``paths`` (default: those of the
    class graded into ``out_dir``) and write the page; returns its path."""
    from autograder.authoring.assignment import load
    from autograder.authoring.bundle import build_bundle
    from autograder.course.identities import CLASS_DIR, Identities
    from autograder.engine.batch import expand_submissions, unique_names
    from autograder.engine.submission import SubmissionError, load_submission

    _copydetect()  # fail before any work when it is missing
    assignment = load(hw)
    bundle = build_bundle(hw, assignment)
    out_dir = Path(out_dir)
    if paths:
        found = expand_submissions(paths, bundle.accept)
        listed = [(str(p), name, name) for p, name in zip(found, unique_names(found))]
    else:
        identities = Identities.load(out_dir)
        listed = []
        for entry in identities.entries:
            who = [course.student(s) if course else None for s in entry.students]
            label = ", ".join(f"{s.id} {s.name}" for s in who if s) or entry.name
            listed.append((entry.path, entry.name, label))
    documents = []
    for path, name, label in listed:
        try:
            submission = load_submission(
                path, hw, bundle.accept, bundle.max_file_bytes, set(bundle.blank)
            )
        except (SubmissionError, OSError):
            continue  # unreadable: graded as such; nothing to compare
        code = student_code(submission.files, bundle.blank, assignment.tags)
        documents.append(Document(name, label, code))
    pairs = compare(documents, bundle.blank, common)
    title = f"{hw}: similarity of student-written code"
    return write_report(out_dir / CLASS_DIR, title, pairs, top, len(documents))
