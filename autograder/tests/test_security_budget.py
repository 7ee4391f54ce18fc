"""The grader's own budget: whatever a submission sends, reading it costs the grading process
at most GRADER_BUDGET of memory, and never an internal error.

Each hostile input is read in a fresh Python process (the same code the grader runs); the
test reads that process's peak resident memory (``VmHWM`` in ``/proc/self/status``, the
high-water mark of the process's own address space). Not ``ru_maxrss``: Linux carries the
parent's high-water mark across a vfork+exec, so after a long pytest session every child
would report pytest's own size. The process runs under a 3 GiB address-space limit so that a
regression fails fast instead of swapping the machine.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from autograder.engine import answers as answer_io
from autograder.engine.paths import REPO_ROOT
from autograder.engine.runner import RECORD_PREFIX
from autograder.engine.sandbox import OutputDemux, SandboxLimits, run_bounded
from autograder.engine.scoring import _judge
from autograder.engine.submission import SubmissionError, load_submission

GRADER_BUDGET_MB = 500
ACCEPT = ("apps/simple_ml.py", "needle/autograd.py")
TOL = answer_io.Tolerance()


def peak_rss_mb(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; (its peak RSS in MB, what it printed)."""
    script = textwrap.dedent(
        """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        sys.path.insert(0, {root!r})
        {code}
        with open("/proc/self/status") as status:
            hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")][0]
        print("PEAK_KB", hwm)
        """
    ).format(root=str(REPO_ROOT), code=textwrap.indent(textwrap.dedent(code), "").strip())
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak_kb = int(done.stdout.split("PEAK_KB")[-1])
    return peak_kb / 1024, done.stdout


# --- (a) archives: extracted bytes, sparse and special members ------------------------------


def sparse_member(name: str, real_size: int) -> tuple[tarfile.TarInfo, bytes]:
    """A PAX (GNU 1.0) sparse member: ``real_size`` bytes when extracted, one 512-byte
    block of map and one byte of data in the archive."""
    sparse_map = f"1\n{real_size - 1}\n1\n".encode().ljust(512, b"\0")
    data = sparse_map + b"x"
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(real_size),
    }
    return info, data


def write_sparse_bomb(path: Path, members: int, real_size: int, accepted: bool = False) -> None:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for number in range(members):
            name = "apps/simple_ml.py" if accepted else f"data/part{number:05d}.bin"
            info, data = sparse_member(name, real_size)
            tar.addfile(info, io.BytesIO(data))


def test_sparse_members_are_refused_and_cost_nothing(tmp_path):
    bomb = tmp_path / "sparse.tar.gz"
    write_sparse_bomb(bomb, members=3000, real_size=900_000)  # 2.7 GB extracted
    assert bomb.stat().st_size < 200_000
    with pytest.raises(SubmissionError, match="sparse"):
        load_submission(bomb, "hw1", ACCEPT, 1_000_000)
    peak, out = peak_rss_mb(
        f"""
        from autograder.engine.submission import load_submission, SubmissionError
        try:
            load_submission({str(bomb)!r}, "hw1", {ACCEPT!r}, 1_000_000)
        except SubmissionError as error:
            print("REFUSED", error)
        """
    )
    print(f"sparse tar.gz ({bomb.stat().st_size} bytes): grader peak RSS {peak:.0f} MB")
    assert "REFUSED" in out and peak < GRADER_BUDGET_MB


def test_unaccepted_members_are_skipped_unread_and_extraction_is_capped(tmp_path):
    """Thousands of ignored members: none is held in memory; the note lists a few."""
    archive = tmp_path / "many.tar.gz"
    chunk = bytes(40_000)
    with tarfile.open(archive, "w:gz") as tar:
        for number in range(1200):  # 48 MB of members nobody grades
            info = tarfile.TarInfo(f"junk/f{number:05d}.bin")
            info.size = len(chunk)
            tar.addfile(info, io.BytesIO(chunk))
        info = tarfile.TarInfo("apps/simple_ml.py")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"x = 1\n"))
    peak, out = peak_rss_mb(
        f"""
        from autograder.engine.submission import load_submission
        sub = load_submission({str(archive)!r}, "hw1", {ACCEPT!r}, 1_000_000)
        print("FILES", sorted(sub.files), "NOTES", sum(len(n) for n in sub.notes))
        """
    )
    print(f"1200 ignored members: grader peak RSS {peak:.0f} MB")
    assert "FILES ['apps/simple_ml.py']" in out and peak < 120


def test_a_huge_member_name_is_cut_once_where_it_enters(tmp_path):
    archive = tmp_path / "longname.tar.gz"
    name = "notes/" + "\x1b[2J" + "A" * 4_000_000 + ".txt"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        info = tarfile.TarInfo("apps/simple_ml.py")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"x = 1\n"))
    assert archive.stat().st_size < 50_000
    submission = load_submission(archive, "hw1", ACCEPT, 1_000_000)
    text = "\n".join(submission.notes)
    assert len(text) < 1000 and "\x1b" not in text and "AAAA" in text
    peak, _ = peak_rss_mb(
        f"""
        from autograder.engine.submission import load_submission
        load_submission({str(archive)!r}, "hw1", {ACCEPT!r}, 1_000_000)
        """
    )
    print(f"4 MB member name ({archive.stat().st_size} bytes): grader peak RSS {peak:.0f} MB")
    assert peak < GRADER_BUDGET_MB


# --- (b) answers: records bounded before json.loads ------------------------------------------


def test_a_huge_nested_answer_record_is_refused_before_parsing(tmp_path):
    record = tmp_path / "record.bin"
    body = b"[" + b"[]," * (20 * 1024 * 1024) + b"[]]"  # 60 MiB, 20 M empty lists
    record.write_bytes(b'{"case": "c", "status": "ok", "value": ' + body + b"}")
    deep = tmp_path / "deep.bin"
    deep.write_bytes(b'{"case": "d", "status": "ok", "value": ' + b"[" * 30_000_000 + b"}")
    peak, out = peak_rss_mb(
        f"""
        from autograder.engine.answers import read_answers
        records = [open({str(record)!r}, "rb").read(), open({str(deep)!r}, "rb").read()]
        parsed = read_answers(records, ["c", "d"])
        print("CASES", {{k: type(v).__name__ for k, v in parsed.cases.items()}})
        """
    )
    print(f"60 MiB nested record + 30 MB deep record: grader peak RSS {peak:.0f} MB")
    assert "'c': 'ErrorAnswer'" in out and "'d': 'ErrorAnswer'" in out
    assert peak < GRADER_BUDGET_MB


def test_the_element_budget_is_shared_by_the_records_of_a_unit():
    many = json.dumps({"case": "x", "status": "ok", "value": [0.0] * 150_000}).encode()
    records = [many.replace(b'"x"', f'"c{i}"'.encode()) for i in range(10)]
    parsed = answer_io.read_answers(records, [f"c{i}" for i in range(10)])
    sizes = [len(v) if isinstance(v, list) else 0 for v in parsed.cases.values()]
    assert sum(sizes) <= answer_io.MAX_UNIT_ELEMENTS
    assert any(isinstance(v, answer_io.ErrorAnswer) for v in parsed.cases.values())


def test_only_one_record_per_expected_case_plus_a_few_is_read():
    flood = [b'{"case": "c", "status": "ok", "value": 1.0}'] * 100_000
    parsed = answer_io.read_answers(flood, ["c"])
    assert parsed.cases == {"c": 1.0} and "only the first" in parsed.problems[0]


def test_a_flood_of_empty_records_stops_the_run_quickly():
    demux = OutputDemux(RECORD_PREFIX, max_record_bytes=64 << 20)
    demux.feed((RECORD_PREFIX + b"\n") * 200_000)
    assert len(demux.records) <= OutputDemux.MAX_RECORDS and demux.too_many_records
    assert demux.record_bytes >= (64 << 20) - OutputDemux.RECORD_MIN_COST  # budget spent
    line = RECORD_PREFIX + b"{}" + b"\n"
    code = f"import os\nline = {line!r}\nwhile True:\n    os.write(1, line * 1000)\n"
    limits = SandboxLimits(wall_s=30.0)
    result = run_bounded([sys.executable, "-c", code], limits, env={}, record_prefix=RECORD_PREFIX)
    assert result.output_exceeded and not result.timed_out and result.wall_s < 20
    assert len(result.records) <= OutputDemux.MAX_RECORDS


# --- (d) scoring never crashes ---------------------------------------------------------------


class Info:
    name, weight = "case", 1.0


def explain(error: answer_io.ErrorAnswer) -> str:
    return f"raised {error.type}: {error.message}"


@pytest.mark.parametrize(
    "raw",
    [
        10**400,
        -(10**300),
        [10**100, 1.0],
        {"$dict": {"k": 10**200}},
        1e308,
        float("nan"),
        "x" * 100_000,
    ],
)
def test_crafted_answers_are_invalid_answers_never_grader_errors(raw):
    line = json.dumps({"case": "case", "status": "ok", "value": raw}).encode()
    parsed = answer_io.read_answers([line], ["case"]).cases.get("case")
    for expected in (1.0, answer_io.NDArrayAnswer(np.ones(3)), [1.0, 2.0], {"k": 1.0}, "s"):
        outcome = _judge(Info(), expected, parsed, TOL, explain)
        assert not outcome.passed


def test_over_long_frames_and_type_names_are_cut_where_they_enter():
    error = {
        "type": "A" * 100_000,
        "message": "\x1b[2J\x1b[H100 / 100\r" + "m" * 100_000,
        "frames": [["/work/" + "f" * 200_000 + ".py", 1, "g" * 100_000]] * 40,
    }
    line = json.dumps({"case": "case", "status": "error", "error": error}).encode()
    parsed = answer_io.read_answers([line], ["case"]).cases["case"]
    assert parsed.type == "<unnamed exception type>"
    assert len(parsed.message) <= answer_io.MAX_MESSAGE_CHARS + 20
    assert "\x1b" not in parsed.message and "\r" not in parsed.message
    assert len(parsed.frames) <= answer_io.MAX_FRAMES
    assert all(len(f) <= 260 and len(fn) <= 100 for f, _, fn in parsed.frames)
    outcome = _judge(Info(), 1.0, parsed, TOL, explain)
    assert not outcome.passed and len(outcome.explanation) < 3000
