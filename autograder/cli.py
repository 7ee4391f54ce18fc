"""The ``autograder`` command line.

    autograder release HW|all [--out DIR] [--fill]      student release
    autograder grade HW SUB... [--jobs N] [--sandbox local|container] [--out DIR] [--bundle B]
    autograder check HW [--dir DIR] [-k EXPR]            students: public tests, sandboxed
    autograder export HW --gradescope [--out FILE]       a Gradescope autograder zip
    autograder bundle HW                                 build the grading bundle, print its folder
    autograder report DIR [--course C [--published]]     re-render gradebook.csv + report.html
    autograder grade HW SUB... --course C [--manifest M] a class: identities, lateness, class report
    autograder grade HW SUB... --cluster local[:N]|ADDR  one Dask task per submission
    autograder regrade HW --course C [--student ID]... [--only UNIT]...   regrade in place, logged
    autograder export HW --canvas|--csv --course C       the class's grades for an LMS import
    autograder similarity HW [SUB...] [--course C]       similarity of student-written code
    autograder demo [--out DIR]                          the offline platform tour
    autograder image build [--engine E] [--base-image I] the container sandbox's image
    autograder serve --course C [--db URL]               the course server (autograder/server)
    autograder serve-tokens --course C [--out CSV]       the students' tokens, for mailing
    autograder serve-demo [--out DIR]                    a demo course server on :8000

Exit status: 0 when the command did its job (grading a submission that scores 0 is a job
done), 2 for usage or setup errors (unknown homework, broken probes, no sandbox, a sandbox
whose canary run fails: nothing is graded), 130/143 when a batch was stopped by SIGINT or
SIGTERM (the gradebook holds what finished; run the same command again to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograder.engine.paths import BUILD_DIR

SERVER_COMMANDS = {
    "serve": "run the course server (uploads, feedback, class dashboard)",
    "serve-tokens": "issue the students' tokens for the course server",
    "serve-demo": "a demo course on the course server",
}


def _homework_and_grader(args):
    from autograder.engine.bundle import GradingBundle
    from autograder.engine.grading import Grader
    from autograder.engine.sandbox import make_sandbox

    if getattr(args, "bundle", None):  # a bundle folder built elsewhere: the engine alone
        homework = GradingBundle.load(args.bundle)
        if homework.name != args.hw:
            raise ValueError(f"{args.bundle} is the bundle of {homework.name}, not {args.hw}")
    else:
        from autograder.authoring.bundle import build_bundle

        visibility = _course(args).policy(args.hw).visibility if _course(args) else None
        homework = build_bundle(
            args.hw, log=lambda m: print(m, file=sys.stderr), visibility=visibility
        )
    sandbox = make_sandbox(args.sandbox, engine=getattr(args, "engine", None))
    overrides: dict[str, float] = {}
    if getattr(args, "timeout", None):
        overrides.update(wall_s=float(args.timeout), cpu_s=int(args.timeout))
    if getattr(args, "memory_mb", None):
        overrides["memory_bytes"] = int(args.memory_mb) * 1024 * 1024
    return Grader(
        homework,
        sandbox,
        limit_overrides=overrides,
        require_all_units=bool(getattr(args, "require_gpu", False)),
    )


def _course(args):
    """The course of ``--course`` (loaded once per command), or None."""
    if not getattr(args, "course", None):
        return None
    if not hasattr(args, "_course"):
        from autograder.course.config import load_course

        args._course = load_course(args.course)
    return args._course


def print_score_table(results: list[dict], stream=sys.stdout) -> None:
    """A plain-text table: submission, score, and each unit's score."""
    if not results:
        return
    units = [t["name"] for t in results[0]["tests"] if t.get("max_score")]
    names = [r["extra_data"].get("submission", "?") for r in results]
    width = max(10, *(len(n) for n in names))
    header = f"{'submission':<{width}}  {'score':>9}  " + "  ".join(
        f"{u:>{max(6, len(u))}}" for u in units
    )
    print(header, file=stream)
    print("-" * len(header), file=stream)
    for name, result in zip(names, results):
        by_name = {t["name"]: t for t in result["tests"]}
        cells = "  ".join(
            f"{by_name[u]['score'] if u in by_name else 0:>{max(6, len(u))}g}" for u in units
        )
        score = f"{result['score']:g}/{result['max_score']:g}"
        print(f"{name:<{width}}  {score:>9}  {cells}", file=stream)


def cmd_grade(args) -> int:
    from autograder.engine.batch import BatchInterrupted
    from autograder.engine.bundle import BundleError
    from autograder.engine.grading import GraderSetupError, SandboxBroken

    if args.cluster and (args.course or args.require_gpu):
        print("autograder: --cluster does not go with --course or --require-gpu", file=sys.stderr)
        return 2
    try:
        grader = _homework_and_grader(args)
    except (GraderSetupError, BundleError, RuntimeError, ValueError) as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or BUILD_DIR / "grades" / args.hw)
    if args.manifest and not args.course:
        print("autograder: --manifest needs --course", file=sys.stderr)
        return 2
    try:
        with grader:
            if not grader.sandbox.isolated:
                print(f"WARNING: {grader.sandbox.describe()}", file=sys.stderr)
            if args.course:
                return _grade_class(args, grader, out)
            if args.cluster:
                results = _grade_on_cluster(args, grader, out)
            else:
                results = grader.grade_batch(
                    args.submissions, out, jobs=args.jobs, resume=not args.no_resume
                )
    except (SandboxBroken, GraderSetupError) as error:
        print(f"autograder: {error}", file=sys.stderr)
        if (out / "gradebook.csv").is_file():
            print(f"gradebook of what finished: {out}/gradebook.csv", file=sys.stderr)
        return 2
    except BatchInterrupted as stop:
        print(
            f"\nautograder: {stop}; running sandboxes were stopped. Gradebook of what "
            f"finished: {out}/gradebook.csv. Run the same command again to resume.",
            file=sys.stderr,
        )
        return stop.exit_status
    print_score_table(results)
    print(
        f"\nresults: {out}/<submission>/results.json; gradebook: {out}/gradebook.csv; "
        f"report: {out}/report.html"
    )
    return 0


def _grade_on_cluster(args, grader, out: Path) -> list[dict]:
    """``--cluster``: one Dask task per submission (``autograder.cluster``)."""
    from autograder.cluster import GradingCluster
    from autograder.cluster.batch import grade_batch_on_cluster, parse_cluster

    address, workers = parse_cluster(args.cluster)

    def connect() -> GradingCluster:  # only when something is left to grade
        return GradingCluster(
            address,
            n_workers=workers or 2,
            sandbox=args.sandbox,
            log=lambda message: print(message, file=sys.stderr),
        )

    return grade_batch_on_cluster(
        connect,
        grader,
        args.submissions,
        out,
        resume=not args.no_resume,
        limits=grader.limit_overrides,
        bundle_required=bool(args.bundle),
    )


def _grade_class(args, grader, out: Path) -> int:
    from autograder.course.classes import grade_class
    from autograder.course.config import CourseError

    try:
        identities = grade_class(
            _course(args),
            grader,
            args.submissions,
            out,
            manifest=Path(args.manifest) if args.manifest else None,
            jobs=args.jobs,
            resume=not args.no_resume,
        )
    except CourseError as error:  # a manifest naming someone not on the roster...
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    _print_identities(identities)
    print(f"\nclass gradebook: {out}/_class/gradebook.csv; class report: {out}/_class/report.html")
    return 0


def _print_identities(identities) -> None:
    for entry in identities.unmatched:
        why = f"several students match: {', '.join(entry.candidates)}" if entry.candidates else ""
        print(f"UNMATCHED: {entry.name} {why}".rstrip(), file=sys.stderr)
    for student, entries in identities.duplicates().items():
        names = ", ".join(e.name for e in entries)
        print(f"SEVERAL SUBMISSIONS: {student}: {names}", file=sys.stderr)
    for warning in identities.warnings:
        print(f"note: {warning}", file=sys.stderr)


def cmd_report(args) -> int:
    from autograder.course.config import CourseError
    from autograder.engine.report import rerender

    try:
        if args.course:
            from autograder.course.classes import refresh

            path = refresh(_course(args), Path(args.dir), published=args.published)
        else:
            path = rerender(Path(args.dir))
    except (FileNotFoundError, CourseError) as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_regrade(args) -> int:
    from autograder.course.config import CourseError
    from autograder.course.regrade import regrade
    from autograder.engine.bundle import BundleError
    from autograder.engine.grading import GraderSetupError

    out = Path(args.out or BUILD_DIR / "grades" / args.hw)
    try:
        course = _course(args)
        with _homework_and_grader(args) as grader:
            changes = regrade(
                course,
                grader,
                out,
                students=args.student or (),
                only=args.only,
                who=args.by,
                reason=args.reason or "",
            )
    except (CourseError, GraderSetupError, BundleError, ValueError) as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    for change in changes:
        who = " ".join(change.entry.students) or "(unmatched)"
        old = "-" if change.old_score is None else f"{change.old_score:g}"
        print(f"{who:<12} {change.entry.name:<24} {change.scope}: {old} -> {change.new_score:g}")
    print(f"\nregrade log: {out}/_class/regrades.csv; class report: {out}/_class/report.html")
    return 0


def cmd_similarity(args) -> int:
    from autograder.course.config import CourseError
    from autograder.course.similarity import SimilarityUnavailable, class_similarity
    from autograder.engine.grading import GraderSetupError

    out = Path(args.out or BUILD_DIR / "grades" / args.hw)
    try:
        page = class_similarity(
            args.hw, out, args.submissions, _course(args), top=args.top, common=args.common
        )
        if _course(args) and not args.submissions:
            from autograder.course.classes import refresh

            refresh(_course(args), out)  # the class report links the page
    except (CourseError, GraderSetupError, SimilarityUnavailable) as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    print(page)
    return 0


def cmd_release(argv: list[str]) -> int:
    from autograder.authoring.release import main as release_main

    return release_main(argv)


def cmd_demo(args) -> int:
    from autograder.authoring.demo import run_demo

    return run_demo(Path(args.out))


def cmd_check(args) -> int:
    from autograder.engine.check import run_check

    return run_check(args.hw, Path(args.dir), args.k, sandbox_kind=args.sandbox)


def cmd_export(args) -> int:
    from autograder.course.config import CourseError

    chosen = [flag for flag in ("gradescope", "canvas", "csv") if getattr(args, flag)]
    if len(chosen) != 1:
        print("autograder export: give one of --gradescope, --canvas, --csv", file=sys.stderr)
        return 2
    try:
        if args.gradescope:
            from autograder.authoring.export import export

            visibility = _course(args).policy(args.hw).visibility if _course(args) else None
            path = export(args.hw, Path(args.out) if args.out else None, visibility=visibility)
        else:
            path = _export_class(args, chosen[0])
    except CourseError as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _export_class(args, kind: str) -> Path:
    from autograder.course.config import CourseError
    from autograder.course.gradebook import (
        class_dir,
        class_rows,
        write_canvas_csv,
        write_plain_csv,
    )
    from autograder.course.identities import Identities

    course = _course(args)
    if course is None:
        raise CourseError(f"export --{kind} needs --course course.toml")
    grades = Path(args.grades or BUILD_DIR / "grades" / args.hw)
    identities = Identities.load(grades)
    rows = class_rows(course, identities, grades)
    name = "canvas.csv" if kind == "canvas" else "grades.csv"
    out = Path(args.out) if args.out else class_dir(grades) / name
    write = write_canvas_csv if kind == "canvas" else write_plain_csv
    return write(out, course, args.hw, rows)


def cmd_bundle(args) -> int:
    from autograder.authoring.bundle import build_bundle
    from autograder.engine.grading import GraderSetupError

    try:
        bundle = build_bundle(args.hw, log=lambda m: print(m, file=sys.stderr))
    except GraderSetupError as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    print(bundle.root)
    return 0


def cmd_image(args) -> int:
    import subprocess

    from autograder.engine.container import ContainerUnavailable, build_image

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        image = build_image(
            engine=args.engine,
            base_image=args.base_image,
            local=args.local,
            fallback=not args.no_fallback,
            log=log,
        )
    except (ContainerUnavailable, OSError, subprocess.TimeoutExpired) as error:
        print(f"autograder: {error}", file=sys.stderr)
        return 2
    print(image)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autograder", description="needle-course: release, grade and report homeworks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("release", help="write a homework's student release", add_help=False)
    for name, text in SERVER_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)

    grade = sub.add_parser("grade", help="grade submissions with the hidden probes")
    grade.add_argument("hw", help="homework, e.g. hw1")
    grade.add_argument("submissions", nargs="+", help="folders, .zip, .tar.gz or .ipynb files")
    grade.add_argument("--jobs", "-j", type=int, default=1, help="submissions graded at once")
    grade.add_argument(
        "--sandbox",
        default="local",
        choices=["local", "container", "bwrap", "unshare", "plain", "docker", "podman"],
        help="local (bubblewrap/unshare, default) or container (docker/podman)",
    )
    grade.add_argument("--engine", choices=["docker", "podman"], help="container engine")
    grade.add_argument("--out", help="output folder (default: build/grades/HW)")
    grade.add_argument("--timeout", type=float, help="per-unit wall and CPU limit, seconds")
    grade.add_argument("--memory-mb", type=int, help="per-process memory limit")
    grade.add_argument(
        "--no-resume", action="store_true", help="regrade submissions already graded"
    )
    grade.add_argument(
        "--require-gpu",
        action="store_true",
        help="fail when a unit cannot be graded here (e.g. CUDA without a GPU) instead of "
        "leaving it out of max_score",
    )
    grade.add_argument(
        "--bundle", help="grade with this grading bundle folder (default: build it from HW)"
    )
    grade.add_argument(
        "--course",
        help="course.toml: match submissions to the roster, apply deadlines and "
        "visibility, write the class gradebook and report (OUT/_class/)",
    )
    grade.add_argument("--manifest", help="CSV of submission,student,submitted_at (with --course)")
    grade.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="grade one Dask task per submission: local[:N] (an in-process cluster of N "
        "workers, default 2) or a scheduler address (tcp://host:8786)",
    )

    regrade = sub.add_parser("regrade", help="regrade a class in place (logged)")
    regrade.add_argument("hw")
    regrade.add_argument("--course", required=True, help="course.toml")
    regrade.add_argument("--out", help="the class's grading folder (default: build/grades/HW)")
    regrade.add_argument(
        "--student", action="append", help="a student id (repeat for several; default: all)"
    )
    regrade.add_argument(
        "--only", action="append", help="regrade only this unit (repeat for several)"
    )
    regrade.add_argument("--reason", help="written to the regrade log")
    regrade.add_argument("--by", help="who regrades (default: the login name)")
    regrade.add_argument(
        "--sandbox",
        default="local",
        choices=["local", "container", "bwrap", "unshare", "plain", "docker", "podman"],
    )
    regrade.add_argument("--engine", choices=["docker", "podman"], help="container engine")
    regrade.add_argument("--timeout", type=float, help="per-unit wall and CPU limit, seconds")
    regrade.add_argument("--memory-mb", type=int, help="per-process memory limit")

    similarity = sub.add_parser(
        "similarity", help="pairwise similarity of student-written code (copydetect)"
    )
    similarity.add_argument("hw")
    similarity.add_argument(
        "submissions", nargs="*", help="submissions (default: the class graded into --out)"
    )
    similarity.add_argument("--out", help="the class's grading folder (default: build/grades/HW)")
    similarity.add_argument("--course", help="course.toml (labels pairs with student names)")
    similarity.add_argument("--top", type=int, default=20, help="pairs shown side by side")
    similarity.add_argument(
        "--common",
        type=int,
        default=None,
        help="ignore code found in more than this many submissions (default: a fifth, >= 2)",
    )

    bundle = sub.add_parser("bundle", help="build (or find) a homework's grading bundle")
    bundle.add_argument("hw")

    check = sub.add_parser("check", help="students: run the public tests of a release, sandboxed")
    check.add_argument("hw")
    check.add_argument("--dir", default=".", help="the release folder (default: .)")
    check.add_argument("-k", default=None, help="pytest -k expression")
    check.add_argument("--sandbox", default="local", choices=["local", "plain"])

    export = sub.add_parser("export", help="export a Gradescope autograder")
    export.add_argument("hw")
    export.add_argument("--gradescope", action="store_true", help="Gradescope zip")
    export.add_argument("--canvas", action="store_true", help="Canvas gradebook import CSV")
    export.add_argument("--csv", action="store_true", help="plain CSV of final scores")
    export.add_argument("--course", help="course.toml (--canvas, --csv; visibility for Gradescope)")
    export.add_argument("--grades", help="the class's grading folder (default: build/grades/HW)")
    export.add_argument(
        "--out",
        help="output (default: build/gradescope/HW.zip, GRADES/_class/canvas.csv, "
        "GRADES/_class/grades.csv)",
    )

    report = sub.add_parser("report", help="re-render gradebook.csv and report.html")
    report.add_argument("dir")
    report.add_argument("--course", help="course.toml: also the class outputs and feedback.txt")
    report.add_argument(
        "--published",
        action="store_true",
        help="grades are published: feedback.txt shows after_published units too",
    )

    demo = sub.add_parser("demo", help="the offline platform tour")
    demo.add_argument("--out", default=str(BUILD_DIR / "demo"))

    image = sub.add_parser("image", help="container image of the grader")
    image.add_argument("action", choices=["build"])
    image.add_argument("--engine", choices=["docker", "podman"])
    image.add_argument("--base-image", default=None, help="Dockerfile BASE_IMAGE")
    image.add_argument(
        "--local", action="store_true", help="import a local root file system (no registry)"
    )
    image.add_argument(
        "--no-fallback",
        action="store_true",
        help="fail when the Dockerfile cannot be built instead of building the local image",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "release":
        return cmd_release(argv[1:])
    if argv and argv[0] in SERVER_COMMANDS:
        from autograder.server.cli import main as server_main

        return server_main(argv)
    args = build_parser().parse_args(argv)
    handlers = {
        "grade": cmd_grade,
        "report": cmd_report,
        "demo": cmd_demo,
        "check": cmd_check,
        "export": cmd_export,
        "bundle": cmd_bundle,
        "image": cmd_image,
        "regrade": cmd_regrade,
        "similarity": cmd_similarity,
    }
    return handlers[args.command](args)
