"""``autograder serve``, ``autograder serve-tokens`` and ``autograder serve-demo``.

autograder serve --course course.toml [--db URL] [--data DIR] [--host H] [--port P]
                 [--homework HW]... [--instructor ID]... [--workers N | --cluster ADDR]
                 [--issue-tokens tokens.csv]
autograder serve-tokens --course course.toml [--db URL] [--data DIR] [--out tokens.csv]
                 [--instructor ID]... [--replace]
autograder serve-demo [--out build/serve-demo] [--port 8000] [--no-serve]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograder.course.config import CourseError
from autograder.server.config import MB, ServerConfig


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--course", required=True, help="the course.toml (roster, deadlines)")
    parser.add_argument(
        "--data", help="the server's data folder (default: server-data next to course.toml)"
    )
    parser.add_argument(
        "--db",
        help="database URL (default: SQLite in the data folder; PostgreSQL: "
        "postgresql+psycopg://user:password@host/dbname)",
    )
    parser.add_argument(
        "--instructor",
        action="append",
        default=[],
        help="an instructor id (repeatable; also course.toml's [server] instructors)",
    )
    parser.add_argument(
        "--homework", action="append", default=[], help="a homework accepted (repeatable)"
    )


def config_of(args: argparse.Namespace) -> ServerConfig:
    course = Path(args.course).resolve()
    return ServerConfig(
        course_path=course,
        data_dir=Path(args.data).resolve() if args.data else course.parent / "server-data",
        db_url=args.db,
        homeworks=tuple(args.homework),
        instructors=tuple(args.instructor),
        max_upload_bytes=int(getattr(args, "max_upload_mb", 10) * MB),
        rate_limit=getattr(args, "rate_limit", 10),
        rate_window_s=getattr(args, "rate_window", 60.0),
        cluster_address=getattr(args, "cluster", None),
        workers=getattr(args, "workers", 2),
        sandbox=getattr(args, "sandbox", "auto"),
        secure_cookies=getattr(args, "secure_cookies", False),
    )


def issue(config: ServerConfig, out: Path, replace: bool = False) -> list[tuple[str, str, str]]:
    """Tokens for everyone who has none (``replace``: new ones for all), into ``out``."""
    from autograder.server.auth import INSTRUCTOR, STUDENT, issue_tokens, write_token_csv
    from autograder.server.db import Database

    course, _, instructors = config.load()
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    db = Database(config.database_url)
    try:
        db.migrate()
        everyone = [(s.id, STUDENT) for s in course.students]
        everyone += [(i, INSTRUCTOR) for i in instructors]
        issued = issue_tokens(db, everyone, replace=replace)
    finally:
        db.close()
    if issued:
        write_token_csv(out, issued)
    return issued


def serve_tokens(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="autograder serve-tokens",
        description="Issue a token to every roster student (and instructor) who has none; "
        "write them to a CSV (id,role,token) to mail out. The server stores only hashes.",
    )
    _common(parser)
    parser.add_argument("--out", default="tokens.csv", help="the CSV (default: %(default)s)")
    parser.add_argument("--replace", action="store_true", help="new tokens for everyone")
    args = parser.parse_args(argv)
    try:
        issued = issue(config_of(args), Path(args.out), args.replace)
    except CourseError as error:
        print(f"autograder serve-tokens: {error}", file=sys.stderr)
        return 2
    if issued:
        print(f"{len(issued)} token(s) written to {args.out} (keep it private; mail each its own)")
    else:
        print("everyone already has a token (--replace issues new ones)")
    return 0


def serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="autograder serve", description="Run the course server (FastAPI + uvicorn)."
    )
    _common(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers")
    parser.add_argument("--cluster", help="a Dask scheduler address instead of local workers")
    parser.add_argument("--sandbox", default="auto", help="the workers' sandbox (auto, local…)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0)
    parser.add_argument("--rate-limit", type=int, default=10, help="submissions per window")
    parser.add_argument("--rate-window", type=float, default=60.0, help="seconds")
    parser.add_argument("--secure-cookies", action="store_true", help="behind HTTPS")
    parser.add_argument("--issue-tokens", metavar="CSV", help="first issue missing tokens")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    config = config_of(args)
    try:
        config.load()
        if args.issue_tokens:
            issued = issue(config, Path(args.issue_tokens))
            print(f"{len(issued)} new token(s) written to {args.issue_tokens}")
    except CourseError as error:
        print(f"autograder serve: {error}", file=sys.stderr)
        return 2
    import uvicorn

    from autograder.server.app import create_app

    print(f"course server on http://{args.host}:{args.port}/ (data: {config.data_dir})")
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        log_level="warning" if args.quiet else "info",
        access_log=not args.quiet,
    )
    return 0


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return serve(rest)
    if command == "serve-tokens":
        return serve_tokens(rest)
    from autograder.server.demo import main as demo

    return demo(rest)
