"""The class report, ``OUT/_class/report.html``: one self-contained page in roster order.

Per student: the submission used, its time, the due date (extensions marked), lateness,
penalty, raw and final score and each unit's score — "n/g" for a unit this machine could not
grade, never a zero, and left out of the means. Per unit: points, visibility (what students
see on Gradescope and in feedback.txt), pass rate. Then the submissions no student claimed,
the students with several, the regrade log, and a link to the similarity page when there is
one. It reuses the engine report's style, sorting script and histogram.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

from autograder.course.config import Course
from autograder.course.gradebook import Row, hours
from autograder.course.identities import Identities
from autograder.engine.report import SORT_SCRIPT, STYLE, histogram_svg, not_graded

EXTRA_STYLE = """
td.late { background: #fdf3d8; } td.toolate, td.missing { background: #f8e1e1; }
td.ng { color: #777; font-style: italic; }
span.vis { font-size: 0.8em; color: #555; display: block; font-weight: normal; }
.warn { background: #fff4e5; border-left: 4px solid #e67e22; padding: 0.5em 1em; }
"""


def _score_class(score: float, points: float) -> str:
    return "full" if score >= points else "zero" if score == 0 else "part"


def render_class_report(
    course: Course,
    identities: Identities,
    rows: list[Row],
    units: list[str],
    points: dict[str, float],
    visibility: dict[str, str],
    out_dir: Path,
) -> str:
    esc = html.escape
    hw = identities.homework
    policy = course.policy(hw)
    folder = Path(out_dir) / "_class"
    title = f"{course.name}: {hw} class report"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{STYLE}{EXTRA_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if any(
        not (r.result or {}).get("extra_data", {}).get("sandbox", {}).get("isolated", True)
        for r in rows
    ):
        parts.append(
            "<div class='banner'>NOT ISOLATED: some submissions ran without a sandbox.</div>"
        )
    graded = [r for r in rows if r.final is not None]
    mean = sum(r.final for r in graded if r.final is not None) / len(graded) if graded else 0.0
    max_score = max((r.max_score or 0.0 for r in graded), default=0.0)
    due = policy.due.isoformat() if policy.due else "none set"
    penalty = (
        f"{policy.late_penalty:g}% of the {policy.penalty_of.replace('_', ' ')} per "
        f"{policy.late_period} started"
        + (f", at most {hours(policy.max_late):g} h late" if policy.max_late else "")
        if policy.late_penalty or policy.max_late
        else "no late penalty"
    )
    parts.append(
        f"<p>{len(course.students)} students on the roster, {len(graded)} with a final score "
        f"(mean {mean:.2f} / {max_score:g}); {len(identities.entries)} submissions. "
        f"Due {esc(due)}; {esc(penalty)}.</p>"
    )
    links = []
    if (folder / "similarity.html").is_file():
        links.append("<a href='similarity.html'>similarity report</a>")
    links += [
        "<a href='gradebook.csv'>gradebook.csv</a>",
        "<a href='../report.html'>per-submission report (feedback)</a>",
    ]
    parts.append("<p>" + " · ".join(links) + "</p>")
    for warning in identities.warnings:
        parts.append(f"<p class='warn'>{esc(warning)}</p>")
    parts.append(
        "<h2>Final scores</h2>" + histogram_svg([r.final or 0.0 for r in graded], max_score)
    )

    parts.append("<h2>Units</h2><table><tr><th class='name'>unit</th><th>points</th>")
    parts.append("<th>visibility</th><th>full marks</th><th>mean</th></tr>")
    for unit in units:
        tests = [t for r in rows for t in (r.result or {}).get("tests", []) if t["name"] == unit]
        counted = [t for t in tests if not not_graded(t)]
        if tests and not counted:
            rate, mean_unit = "not graded here", ""
        else:
            full = sum(1 for t in counted if t["score"] >= t["max_score"])
            rate = f"{full}/{len(counted)}"
            mean_unit = f"{sum(t['score'] for t in counted) / len(counted):.2f}" if counted else ""
        parts.append(
            f"<tr><td class='name'>{esc(unit)}</td><td>{points.get(unit, 0):g}</td>"
            f"<td>{esc(visibility.get(unit, 'visible'))}</td><td>{rate}</td>"
            f"<td>{mean_unit}</td></tr>"
        )
    parts.append("</table>")

    parts.append("<h2>Students</h2><p>Roster order; click a column to sort.</p>")
    parts.append("<table class='sortable'><thead><tr>")
    heads = [
        "id",
        "name",
        "submission",
        "submitted",
        "due",
        "late (h)",
        "penalty",
        "raw",
        "final",
        "status",
    ]
    parts += [
        f"<th class='name'>{h}</th>"
        if h in ("id", "name", "submission", "status")
        else f"<th>{h}</th>"
        for h in heads
    ]
    for unit in units:
        shown = visibility.get(unit, "visible")
        parts.append(f"<th>{esc(unit)}<span class='vis'>{esc(shown)}</span></th>")
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append(_student_row(row, units))
    parts.append("</tbody></table>")

    unmatched = identities.unmatched
    parts.append(f"<h2>Submissions matched to no student ({len(unmatched)})</h2>")
    if unmatched:
        parts.append("<table><tr><th class='name'>submission</th><th class='name'>why</th></tr>")
        for entry in unmatched:
            why = (
                "several students match its name: " + ", ".join(entry.candidates)
                if entry.candidates
                else "no roster student matches its name or metadata"
            )
            parts.append(
                f"<tr><td class='name'>{esc(entry.name)}</td><td class='name'>{esc(why)}</td></tr>"
            )
        parts.append(
            "</table><p>Add the name to the student's <code>files</code> patterns, "
            "or list it in a manifest, and grade again (nothing is regraded).</p>"
        )
    duplicates = identities.duplicates()
    parts.append(f"<h2>Students with several submissions ({len(duplicates)})</h2>")
    if duplicates:
        parts.append("<ul>")
        for student_id, entries in duplicates.items():
            listed = ", ".join(f"{e.name} ({e.submitted_at or 'time unknown'})" for e in entries)
            parts.append(f"<li>{esc(student_id)}: {esc(listed)}</li>")
        parts.append("</ul>")
    log = folder / "regrades.csv"
    if log.is_file():
        with open(log, newline="", encoding="utf-8") as handle:
            entries_log = list(csv.DictReader(handle))
        parts.append(f"<h2>Regrades ({len(entries_log)})</h2><table><tr>")
        columns = list(entries_log[0]) if entries_log else []
        parts += [f"<th class='name'>{esc(c)}</th>" for c in columns]
        parts.append("</tr>")
        for item in entries_log[-200:]:
            parts.append(
                "<tr>"
                + "".join(f"<td class='name'>{esc(item[c] or '')}</td>" for c in columns)
                + "</tr>"
            )
        parts.append("</table>")
    parts.append(f"<script>{SORT_SCRIPT}</script></body></html>")
    return "".join(parts)


def _student_row(row: Row, units: list[str]) -> str:
    esc = html.escape
    late = row.lateness
    cells = [
        f"<td class='name'>{esc(row.student.id)}</td>",
        f"<td class='name'>{esc(row.student.name)}</td>",
        f"<td class='name'>{esc(row.entry.name if row.entry else '')}</td>",
        f"<td>{esc(row.entry.submitted_at or 'unknown') if row.entry else ''}</td>",
    ]
    due = late.due.isoformat() if late and late.due else ""
    extended = " (extension)" if late and late.extended else ""
    cells.append(f"<td>{esc(due + extended)}</td>")
    if late is None:
        cells.append("<td></td><td></td>")
    else:
        css = "toolate" if late.too_late else "late" if late.late_by else ""
        cells.append(
            f"<td class='{css}' data-value='{hours(late.late_by)}'>{hours(late.late_by):g}</td>"
        )
        cells.append(
            f"<td class='{css}' data-value='{late.penalty_percent}'>{late.penalty_percent:g}%</td>"
        )
    cells.append(f"<td>{'' if row.raw is None else f'{row.raw:g}'}</td>")
    if row.final is None:
        cells.append("<td class='missing' data-value='-1'></td>")
    else:
        cells.append(f"<td data-value='{row.final}'>{row.final:g}</td>")
    cells.append(f"<td class='name'>{esc(row.status)}</td>")
    by_name = {t["name"]: t for t in (row.result or {}).get("tests", [])}
    for unit in units:
        test = by_name.get(unit)
        if test is None:
            cells.append("<td></td>")
        elif not_graded(test):
            cells.append("<td class='ng' data-value='-1' title='not graded here'>n/g</td>")
        else:
            css = _score_class(test["score"], test["max_score"])
            cells.append(f"<td class='{css}' data-value='{test['score']}'>{test['score']:g}</td>")
    return "<tr>" + "".join(cells) + "</tr>"
