"""``autograder serve-demo`` (``make serve-demo``): a demo course on the course server.

Writes under ``build/serve-demo``: a roster of three students and an instructor, a
course.toml (hw1, due in a week, 10% per day late), hw1's student release naming the server
(so ``make submit`` in it uploads), the tokens (printed, and in tokens.csv); then serves on
127.0.0.1:8000 with two local grading workers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROSTER = """id,name,email
s1001,Alice Jones,alice@example.edu
s1002,Bob Smith,bob@example.edu
s1003,Carol Diaz,carol@example.edu
"""


def write_demo_course(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "roster.csv").write_text(ROSTER, encoding="utf-8")
    due = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)).replace(microsecond=0)
    (out / "course.toml").write_text(
        '[course]\nname = "needle demo course"\nroster = "roster.csv"\n\n'
        '[server]\ninstructors = ["prof"]\n\n'
        f'[homeworks.hw1]\ndue = {due.isoformat()}\nlate_penalty = 10\nlate_period = "day"\n'
        'max_late = "3d"\n',
        encoding="utf-8",
    )
    return out / "course.toml"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="autograder serve-demo", description=__doc__)
    parser.add_argument("--out", default="build/serve-demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-serve", action="store_true", help="set up, print, do not serve")
    args = parser.parse_args(argv)
    from autograder.authoring.release import build_release
    from autograder.server.cli import serve
    from autograder.server.config import ServerConfig

    out = Path(args.out).resolve()
    url = f"http://{args.host}:{args.port}"
    course = write_demo_course(out)
    release = build_release("hw1", out / "release", server=url)
    config = ServerConfig(course_path=course, data_dir=out / "server-data")
    from autograder.server.cli import issue

    tokens = out / "tokens.csv"
    issued = issue(config, out / "new-tokens.csv")
    if issued:
        (out / "new-tokens.csv").replace(tokens)
    print(f"demo course: {course}")
    print(f"hw1 release (make submit uploads to {url}): {release}")
    print(f"tokens ({tokens}):")
    print(tokens.read_text(encoding="utf-8").rstrip())
    print(f"\nopen {url}/ and log in with a token; in the release:")
    print(f"  cd {release} && NEEDLE_TOKEN=<a student's token> make submit")
    sys.stdout.flush()
    if args.no_serve:
        return 0
    return serve(
        [
            "--course",
            str(course),
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--homework",
            "hw1",
        ]
    )
