"""The course server's settings (``autograder serve`` flags) and the course it serves."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from autograder.course.config import Course, CourseError, load_course
from autograder.server.db import sqlite_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MB = 1024 * 1024


@dataclass
class ServerConfig:
    course_path: Path
    data_dir: Path
    db_url: str | None = None  # default: SQLite in data_dir/server.db
    homeworks: tuple[str, ...] = ()  # default: the course's [homeworks.*]
    instructors: tuple[str, ...] = ()  # besides course.toml's [server] instructors
    max_upload_bytes: int = 10 * MB
    rate_limit: int = 10  # submissions per student per rate_window_s
    rate_window_s: float = 60.0
    cluster_address: str | None = None  # None: an in-process LocalCluster
    workers: int = 2
    sandbox: str = "auto"
    retries: int = 2
    secure_cookies: bool = False  # set the Secure flag (behind HTTPS)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(Path(self.data_dir) / "server.db")

    def load(self) -> tuple[Course, tuple[str, ...], tuple[str, ...]]:
        """The course, the homeworks served and the instructor ids."""
        course = load_course(self.course_path)
        extra = server_table(Path(self.course_path))
        homeworks = self.homeworks or tuple(extra.get("homeworks", ())) or tuple(course.policies)
        if not homeworks:
            raise CourseError(
                f"{self.course_path}: no homework to serve; add [homeworks.hwN] or --homework"
            )
        instructors = tuple(dict.fromkeys((*extra.get("instructors", ()), *self.instructors)))
        return course, homeworks, instructors


def server_table(course_path: Path) -> dict:
    """course.toml's optional ``[server]`` table: ``instructors = ["id", ...]`` and
    ``homeworks = ["hw1", ...]`` (the homeworks accepted; default: those it names)."""
    try:
        data = tomllib.loads(Path(course_path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CourseError(f"{course_path}: {error}") from None
    table = data.get("server", {})
    if not isinstance(table, dict):
        raise CourseError(f"{course_path}: [server] must be a table")
    for key in ("instructors", "homeworks"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CourseError(f"{course_path}: [server] {key} must be a list of strings")
    return table
