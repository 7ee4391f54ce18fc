"""Which roster student handed in which submission, and when.

Three sources, strongest first, for each submission:

1. a **manifest** CSV (``--manifest``), columns ``submission`` (the file or folder name),
   ``student`` (a roster id, optional) and ``submitted_at`` (ISO 8601, optional): what an
   LMS download or a hand-kept list says;
2. Gradescope's **``submission_metadata.json``** inside the submission (folder or zip):
   ``users[].sid`` (else ``users[].email``) and ``created_at``; a group submission belongs
   to every user it names;
3. the **file name**: a student matches when the name (archive suffix removed, case
   ignored) is their id, email, email local part or login, contains one of those as a
   ``_``/``-``/space-separated word, or matches one of their roster ``files`` patterns.

A submission that matches no student, or several (``candidates``), is *unmatched*; a student
with several submissions has *duplicates*. Both are reported, and every submission keeps its
own output folder and result: nothing is dropped or overwritten. Identities are saved with
the grades (``OUT/_class/identities.json``) so regrades and exports find them again.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder.course.config import Course, CourseError, Student

GRADESCOPE_METADATA = "submission_metadata.json"
MAX_METADATA_BYTES = 1_000_000
CLASS_DIR = "_class"  # batch output names never start with "_" (batch.safe_name strips it)
IDENTITIES = "identities.json"
_WORDS = re.compile(r"[\s_\-]+")


@dataclass
class Entry:
    """One graded submission: its output folder name, where it came from, whose it is."""

    name: str  # the output folder under OUT (batch.unique_names)
    path: str  # the submission as given (absolute)
    students: list[str] = field(default_factory=list)  # roster ids; empty: unmatched
    how: str = ""  # "manifest", "gradescope metadata", "file name" or "" (unmatched)
    submitted_at: str | None = None  # ISO 8601 with offset
    time_from: str = ""  # where the time came from
    candidates: list[str] = field(default_factory=list)  # several students matched the name

    @property
    def submitted(self) -> dt.datetime | None:
        return dt.datetime.fromisoformat(self.submitted_at) if self.submitted_at else None


@dataclass
class Identities:
    homework: str
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)

    def of(self, student_id: str) -> list[Entry]:
        return [e for e in self.entries if student_id in e.students]

    @property
    def unmatched(self) -> list[Entry]:
        return [e for e in self.entries if not e.students]

    def duplicates(self) -> dict[str, list[Entry]]:
        ids = {s for e in self.entries for s in e.students}
        return {s: self.of(s) for s in sorted(ids) if len(self.of(s)) > 1}

    def save(self, out_dir: Path) -> Path:
        folder = Path(out_dir) / CLASS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        data = {
            "homework": self.homework,
            "entries": [asdict(e) for e in self.entries],
            "warnings": self.warnings,
        }
        path = folder / IDENTITIES
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(data, indent=1))
        partial.replace(path)
        return path

    @classmethod
    def load(cls, out_dir: Path) -> Identities:
        path = Path(out_dir) / CLASS_DIR / IDENTITIES
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CourseError(
                f"{path}: no identities ({error}); grade the class with --course first"
            ) from None
        return cls(data["homework"], [Entry(**e) for e in data["entries"]], data["warnings"])


def name_matches(student: Student, name: str) -> bool:
    """Whether a submission called ``name`` (suffix removed) carries ``student``'s identity."""
    name = name.casefold()
    keys = {student.id, student.email, student.email.split("@")[0], student.login}
    keys = {k.casefold() for k in keys if k}
    words = set(_WORDS.split(name))
    if name in keys or keys & words:
        return True
    return any(fnmatch.fnmatchcase(name, p.casefold()) for p in student.patterns)


def strip_suffix(file_name: str) -> str:
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip", ".ipynb", ".py"):
        if file_name.lower().endswith(suffix):
            return file_name[: -len(suffix)]
    return file_name


def gradescope_metadata(path: Path) -> dict | None:
    """The ``submission_metadata.json`` at the top of a submission folder or zip (or in its
    single top-level folder), parsed; None when there is none or it is unreadable."""
    raw: bytes | None = None
    try:
        if path.is_dir():
            for candidate in (path / GRADESCOPE_METADATA, *path.glob(f"*/{GRADESCOPE_METADATA}")):
                if candidate.is_file() and candidate.stat().st_size <= MAX_METADATA_BYTES:
                    raw = candidate.read_bytes()
                    break
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    parts = info.filename.strip("/").split("/")
                    if parts[-1] == GRADESCOPE_METADATA and len(parts) <= 2:
                        if info.file_size <= MAX_METADATA_BYTES:
                            raw = archive.read(info)
                        break
        data = json.loads(raw) if raw else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return data if isinstance(data, dict) else None


def read_manifest(path: Path, course: Course) -> dict[str, dict]:
    """Manifest rows by submission file name: {"student": id or "", "submitted_at": dt}."""
    rows: dict[str, dict] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if "submission" not in (reader.fieldnames or []):
                raise CourseError(f"{path}: the manifest needs a 'submission' column")
            for number, row in enumerate(reader, start=2):
                name = Path((row.get("submission") or "").strip()).name
                student = (row.get("student") or "").strip()
                if student and course.student(student) is None:
                    raise CourseError(f"{path}:{number}: {student!r} is not on the roster")
                when = (row.get("submitted_at") or "").strip()
                try:
                    time = course.parse_time(when) if when else None
                except ValueError:
                    raise CourseError(f"{path}:{number}: bad submitted_at {when!r}") from None
                rows[name] = {"student": student, "submitted_at": time}
    except OSError as error:
        raise CourseError(f"{path}: {error}") from None
    return rows


def match_submissions(
    course: Course,
    homework: str,
    submissions: list[tuple[Path, str]],
    manifest: dict[str, dict] | None = None,
) -> Identities:
    """Identities of ``submissions`` ((path, output name) pairs, in batch order)."""
    manifest = manifest or {}
    entries = []
    warnings = []
    for path, name in submissions:
        entry = Entry(name=name, path=str(Path(path).resolve()))
        row = manifest.get(Path(path).name)
        metadata = gradescope_metadata(Path(path))
        if row and row["student"]:
            entry.students, entry.how = [row["student"]], "manifest"
        elif metadata is not None:
            entry.students = _metadata_students(course, metadata)
            entry.how = "gradescope metadata" if entry.students else ""
            if not entry.students:
                warnings.append(f"{name}: {GRADESCOPE_METADATA} names no roster student")
        if not entry.students and not entry.how:
            found = [
                s.id for s in course.students if name_matches(s, strip_suffix(Path(path).name))
            ]
            if len(found) == 1:
                entry.students, entry.how = found, "file name"
            elif found:
                entry.candidates = found
        if row and row["submitted_at"] is not None:
            entry.submitted_at, entry.time_from = row["submitted_at"].isoformat(), "manifest"
        elif metadata is not None and isinstance(metadata.get("created_at"), str):
            try:
                moment = course.parse_time(metadata["created_at"])
                entry.submitted_at, entry.time_from = moment.isoformat(), "gradescope metadata"
            except ValueError:
                warnings.append(f"{name}: unreadable created_at in {GRADESCOPE_METADATA}")
        entries.append(entry)
    given = {Path(p).name for p, _ in submissions}
    warnings += [
        f"manifest row {n!r} names no submission given" for n in manifest if n not in given
    ]
    return Identities(homework, entries, warnings)


def _metadata_students(course: Course, metadata: dict) -> list[str]:
    users = metadata.get("users")
    found: list[str] = []
    for user in users if isinstance(users, list) else []:
        if not isinstance(user, dict):
            continue
        sid, email = str(user.get("sid") or ""), str(user.get("email") or "").casefold()
        for student in course.students:
            if (sid and student.id == sid) or (email and student.email.casefold() == email):
                if student.id not in found:
                    found.append(student.id)
                break
    return found


def merge_previous(current: Identities, out_dir: Path) -> Identities:
    """Keep the entries of an earlier class run whose submissions this run did not name
    (their results are still in OUT): a later run with only the late submissions must not
    make the earlier ones disappear from the class."""
    try:
        previous = Identities.load(out_dir)
    except CourseError:
        return current
    names = {e.name for e in current.entries}
    kept = [
        e
        for e in previous.entries
        if e.name not in names and (Path(out_dir) / e.name / "results.json").is_file()
    ]
    return Identities(current.homework, kept + current.entries, current.warnings)
