"""Batch outputs: ``gradebook.csv`` and a self-contained ``report.html``.

The HTML report needs no network and no assets: one file with a sortable table (click a
column header), a score histogram drawn as inline SVG, the pass rate of every test, and a
red "NOT ISOLATED" banner when any submission ran without a sandbox. It contains scores and
our own feedback only; hidden probe code and reference values never reach it.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path


def load_results(folder: Path, homework: str | None = None) -> list[dict]:
    """Every ``*/results.json`` under ``folder`` (of ``homework`` only, when given), sorted by
    submission name."""
    found = []
    for path in sorted(Path(folder).glob("*/results.json")):
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(results, dict) or "score" not in results:
            continue
        extra = results.setdefault("extra_data", {})
        if homework is not None and extra.get("homework", homework) != homework:
            continue
        extra.setdefault("submission", path.parent.name)
        found.append(results)
    return found


def unit_names(results: list[dict]) -> list[str]:
    names: list[str] = []
    for result in results:
        for test in result.get("tests", []):
            if test["name"] not in names and (test.get("max_score", 0) or not_graded(test)):
                names.append(test["name"])
    return names


def not_graded(test: dict) -> bool:
    """A unit this grader could not run (e.g. CUDA without a GPU): shown, never a zero."""
    return bool(test.get("extra_data", {}).get("not_graded"))


def _cell(test: dict | None):
    if test is None:
        return ""
    return "not graded" if not_graded(test) else test["score"]


def write_gradebook(path: Path, results: list[dict]) -> None:
    units = unit_names(results)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["submission", "score", "max_score", *units, "gradable", "note"])
        for result in results:
            extra = result.get("extra_data", {})
            by_name = {t["name"]: t for t in result.get("tests", [])}
            row = [extra.get("submission", ""), result["score"], result["max_score"]]
            row += [_cell(by_name.get(u)) for u in units]
            note = "" if extra.get("gradable", True) else result.get("output", "")[-200:]
            row += ["yes" if extra.get("gradable", True) else "no", note.replace("\n", " ")]
            writer.writerow([csv_cell(cell) for cell in row])


def csv_cell(value):
    """A cell a spreadsheet shows as text: no control characters, and a leading = + - @
    tab or CR (a formula) neutralised with a quote."""
    if not isinstance(value, str):
        return value
    value = "".join(c for c in value if c in "\t" or not (ord(c) < 32 or 127 <= ord(c) < 160))
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def histogram_svg(scores: list[float], max_score: float, bins: int = 10) -> str:
    width, height, pad = 420, 160, 24
    counts = [0] * bins
    for score in scores:
        fraction = score / max_score if max_score else 0.0
        counts[min(bins - 1, max(0, int(fraction * bins)))] += 1
    top = max(counts) or 1
    bar_w = (width - 2 * pad) / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" '
        f'role="img" aria-label="score histogram">'
    ]
    for i, count in enumerate(counts):
        h = (height - pad) * count / top
        x = pad + i * bar_w
        y = height - h
        low, high = max_score * i / bins, max_score * (i + 1) / bins
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
            f'fill="#4a78c2"><title>{low:g}–{high:g}: {count}</title></rect>'
        )
        if count:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle">{count}</text>'
            )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height + 14}" font-size="9" '
            f'text-anchor="middle">{low:g}</text>'
        )
    parts.append(
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#333"/></svg>'
    )
    return "".join(parts)


SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.dataset.order !== 'asc';
    th.dataset.order = ascending ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.value || a.cells[column].textContent;
      var y = b.cells[column].dataset.value || b.cells[column].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #eee; cursor: pointer; }
td.name, th.name { text-align: left; }
td.full { background: #e3f4e3; } td.zero { background: #f8e1e1; } td.part { background: #fdf3d8; }
.banner { background: #c0392b; color: white; padding: 1em; font-weight: bold; font-size: 1.2em; }
details pre { white-space: pre-wrap; max-width: 60em; text-align: left; font-size: 0.85em; }
"""


def render_html(results: list[dict], title: str) -> str:
    units = unit_names(results)
    scores = [float(r["score"]) for r in results]
    max_score = max((float(r["max_score"]) for r in results), default=0.0)
    isolated = all(
        r.get("extra_data", {}).get("sandbox", {}).get("isolated", True) for r in results
    )
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
    ]
    if not isolated:
        parts.append(
            "<div class='banner'>NOT ISOLATED: some submissions ran without a sandbox; "
            "their scores cannot be trusted.</div>"
        )
    if any(
        r.get("extra_data", {}).get("sandbox", {}).get("memory_enforced") == "rlimit-only"
        for r in results
    ):
        parts.append(
            "<p><b>Memory limit not fully enforced</b>: some submissions ran without a memory "
            "cgroup (only each process's address space was limited).</p>"
        )
    mean = sum(scores) / len(scores) if scores else 0.0
    gradable = sum(1 for r in results if r.get("extra_data", {}).get("gradable", True))
    parts.append(f"<h1>{esc(title)}</h1>")
    parts.append(
        f"<p>{len(results)} submissions ({gradable} gradable), mean score {mean:.2f} / "
        f"{max_score:g}.</p>"
    )
    sandboxes = sorted(
        {r.get("extra_data", {}).get("sandbox", {}).get("description", "?") for r in results}
    )
    parts.append("<p>Sandbox: " + esc("; ".join(sandboxes)) + "</p>")
    parts.append("<h2>Score distribution</h2>" + histogram_svg(scores, max_score))
    parts.append("<h2>Pass rate per test</h2><table><tr><th class='name'>test</th>")
    parts.append("<th>points</th><th>full marks</th><th>mean score</th></tr>")
    for unit in units:
        every = [t for r in results for t in r.get("tests", []) if t["name"] == unit]
        tests = [t for t in every if not not_graded(t)]  # left out of rates and means
        if every and not tests:
            parts.append(
                f"<tr><td class='name'>{esc(unit)}</td><td colspan='3'>not graded here: "
                f"{esc(str(every[0]['extra_data']['not_graded'])[:120])}</td></tr>"
            )
            continue
        full = sum(1 for t in tests if t["score"] >= t["max_score"])
        mean_unit = sum(t["score"] for t in tests) / len(tests) if tests else 0
        points = tests[0]["max_score"] if tests else 0
        rate = 100.0 * full / len(tests) if tests else 0.0
        parts.append(
            f"<tr><td class='name'>{esc(unit)}</td><td>{points:g}</td>"
            f"<td>{rate:.0f}% ({full}/{len(tests)})</td><td>{mean_unit:.2f}</td></tr>"
        )
    parts.append("</table><h2>Submissions</h2><p>Click a column to sort.</p>")
    parts.append("<table class='sortable'><thead><tr><th class='name'>submission</th>")
    parts.append("<th>score</th>" + "".join(f"<th>{esc(u)}</th>" for u in units))
    parts.append("<th class='name'>feedback</th></tr></thead><tbody>")
    for result in results:
        extra = result.get("extra_data", {})
        by_name = {t["name"]: t for t in result.get("tests", [])}
        parts.append(f"<tr><td class='name'>{esc(str(extra.get('submission', '')))}</td>")
        parts.append(f"<td data-value='{result['score']}'>{result['score']:g}</td>")
        for unit in units:
            test = by_name.get(unit)
            if test is None:
                parts.append("<td></td>")
                continue
            if not_graded(test):
                parts.append("<td data-value='-1' title='not graded here'>n/g</td>")
                continue
            css = (
                "full"
                if test["score"] >= test["max_score"]
                else "zero"
                if test["score"] == 0
                else "part"
            )
            parts.append(f"<td class='{css}' data-value='{test['score']}'>{test['score']:g}</td>")
        feedback = (result.get("output", "") + "\n\n").lstrip()
        for test in result.get("tests", []):
            feedback += f"== {test['name']}\n{test.get('output', '')}\n"
        parts.append(
            "<td class='name'><details><summary>details</summary>"
            f"<pre>{esc(feedback)}</pre></details></td></tr>"
        )
    parts.append(f"</tbody></table><script>{SORT_SCRIPT}</script></body></html>")
    return "".join(parts)


def write_batch_outputs(out_dir: Path, results: list[dict], homework=None) -> None:
    """``gradebook.csv`` and ``report.html`` for a batch."""
    out_dir = Path(out_dir)
    name = getattr(homework, "name", None) or (
        results[0].get("extra_data", {}).get("homework", "") if results else ""
    )
    write_gradebook(out_dir / "gradebook.csv", results)
    (out_dir / "report.html").write_text(render_html(results, f"{name} grading report".strip()))


def rerender(folder: Path) -> Path:
    """``autograder report DIR``: rebuild the gradebook and report from stored results."""
    results = load_results(Path(folder))
    if not results:
        raise FileNotFoundError(f"no */results.json under {folder}")
    write_batch_outputs(Path(folder), results)
    return Path(folder) / "report.html"
