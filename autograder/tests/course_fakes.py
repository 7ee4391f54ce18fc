"""Synthetic classes for the course tests: a roster, a course.toml, stored results.json files
and identities, written the way a graded class leaves them on disk, without grading."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from autograder.course.config import load_course
from autograder.course.identities import Entry, Identities

ROSTER = """\
id,name,email,login,canvas_id,section,files
s1,Ann Lee,ann@uni.edu,alee,501,A,annie*
s2,Ben Ode,ben@uni.edu,bode,502,A,
s3,Cat Poe,cat.poe@uni.edu,cpoe,503,B,
s4,Dee Roy,dee@uni.edu,droy,504,B,
"""
POINTS = {"forward": 10.0, "backward": 25.0, "cuda_ops": 5.0}


def write_course(folder: Path, homework_table: str = "", roster: str = ROSTER):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "roster.csv").write_text(roster)
    (folder / "course.toml").write_text(
        '[course]\nname = "Test class"\nroster = "roster.csv"\n\n' + textwrap.dedent(homework_table)
    )
    return load_course(folder / "course.toml")


def fake_result(name: str, scores: dict[str, float], visibility: dict | None = None) -> dict:
    """A results.json as the engine writes it; ``cuda_ops`` is a unit not graded here."""
    tests = []
    for number, (unit, points) in enumerate(POINTS.items(), start=1):
        test = {
            "name": unit,
            "number": str(number),
            "score": 0.0 if unit == "cuda_ops" else float(scores[unit]),
            "max_score": 0.0 if unit == "cuda_ops" else points,
            "status": "failed",
            "output": f"feedback of {unit} for {name}",
            "output_format": "text",
            "visibility": (visibility or {}).get(unit, "visible"),
            "tags": ["hw1", unit],
            "extra_data": {"not_graded": "no GPU"} if unit == "cuda_ops" else {},
        }
        tests.append(test)
    return {
        "score": sum(t["score"] for t in tests),
        "max_score": sum(t["max_score"] for t in tests),
        "output": "",
        "visibility": "visible",
        "tests": tests,
        "extra_data": {
            "homework": "hw1",
            "submission": name,
            "gradable": True,
            "sandbox": {"isolated": True, "description": "bwrap"},
        },
    }


def write_class(out: Path, graded: list[tuple[Entry, float, float]], visibility=None):
    """A graded class on disk: each (entry, forward, backward) its results.json, and the
    identities file."""
    for entry, forward, backward in graded:
        folder = out / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        scores = {"forward": forward, "backward": backward}
        result = fake_result(entry.name, scores, visibility)
        (folder / "results.json").write_text(json.dumps(result, indent=1))
    identities = Identities("hw1", [entry for entry, _, _ in graded])
    identities.save(out)
    return identities
