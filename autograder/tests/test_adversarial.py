"""The adversarial suite: malicious hw1 submissions (``adversarial/``) graded as one batch.

Each must score no more than the blank release, the batch must finish with a result for every
one of them, and the attacks that report what they found (``ATTACK-REPORT [...]`` in the
feedback) must have found nothing: no grader file, no reference, no network, no writable
place outside the sandbox's private scratch space, no other process.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from autograder.engine import cgroups
from autograder.engine.paths import REPO_ROOT
from autograder.engine.results import MEMORY_NOT_ENFORCED
from autograder.tests.adversarial.build import PACKAGING_ATTACKS, build_all, payload_attacks
from autograder.tests.sandbox_helpers import sleeping_daemons

pytestmark = pytest.mark.hw1

# Writable inside the sandbox and private to it: /tmp and a 1 MiB /dev/shm (both discarded).
PRIVATE_SCRATCH = ("/tmp/", "/dev/shm/")
HOST_SENTINELS = [
    REPO_ROOT / "build" / "autograder" / "ADVERSARIAL-PWNED",
    REPO_ROOT / "autograder" / "probes" / "ADVERSARIAL-PWNED",
    Path("/tmp/ADVERSARIAL-TRAVERSAL.py"),
    Path("/tmp/ADVERSARIAL-ABSOLUTE.py"),
    Path("/ADVERSARIAL-PWNED"),
    Path("/etc/ADVERSARIAL-PWNED"),
]


def attack_reports(results: dict) -> list[list[str]]:
    found = []
    for test in results["tests"]:
        for match in re.finditer(r"ATTACK-REPORT (\[[^\]]*\])", test["output"]):
            found.append(json.loads(match.group(1)))
    return found


@pytest.fixture(scope="module")
def adversarial_batch(hw1, fast_hw1_grader, tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    paths = build_all(root / "submissions", hw1.blank)
    blank = root / "blank"
    from autograder.tests.conftest import make_submission

    make_submission(blank, hw1)
    start_rss = _reset_peak_rss()
    results = fast_hw1_grader.grade_batch(
        [*paths, blank], root / "out", jobs=2, progress=False, resume=False
    )
    GRADER_PEAK["growth"] = _status_kib("VmHWM") * 1024 - start_rss
    return paths, results, root / "out"


# The grader's own budget while it grades the whole batch (it grades in this process, in
# threads): its resident peak may grow by at most this much, whatever the submissions do.
GRADER_BUDGET = 500 << 20
GRADER_PEAK: dict[str, int] = {}


def _status_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith(field + ":")).split()[1])


def _reset_peak_rss() -> int:
    """Reset this process's resident high-water mark to its current size (Linux >= 4.0:
    "5" to /proc/self/clear_refs); that size, in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def test_the_grader_stays_within_its_memory_budget(adversarial_batch):
    print(f"grader resident peak grew {GRADER_PEAK['growth'] >> 20} MiB over the batch")
    assert 0 <= GRADER_PEAK["growth"] < GRADER_BUDGET, GRADER_PEAK["growth"] >> 20


def test_the_suite_has_at_least_fifteen_attacks():
    assert len(payload_attacks()) + len(PACKAGING_ATTACKS) >= 15


def test_every_attack_gets_a_result_and_no_more_than_the_blank_release(adversarial_batch):
    paths, results, out = adversarial_batch
    assert len(results) == len(paths) + 1
    blank = results[-1]
    assert blank["extra_data"]["submission"] == "blank"
    for path, result in zip(paths, results):
        assert (out / result["extra_data"]["submission"] / "results.json").is_file()
        assert result["score"] <= blank["score"], (path.name, result["score"])
        assert result["max_score"] == blank["max_score"]
        for test in result["tests"]:
            assert test["score"] <= next(
                t["score"] for t in blank["tests"] if t["name"] == test["name"]
            ), (path.name, test["name"])


def test_attacks_find_nothing_outside_the_sandbox(adversarial_batch):
    paths, results, _ = adversarial_batch
    by_name = {r["extra_data"]["submission"]: r for r in results}
    for name in ("read_hidden", "network", "import_other_needle", "write_outside"):
        for report in attack_reports(by_name[name]):
            leaks = [p for p in report if not p.startswith(PRIVATE_SCRATCH)]
            assert leaks == [], (name, leaks)
    # The process list a submission sees holds its own sandbox only (pid namespace).
    for report in attack_reports(by_name["kill_everything"]):
        assert len(report) <= 3, report
    for sentinel in HOST_SENTINELS:
        assert not sentinel.exists(), sentinel
    assert sleeping_daemons() == []


def test_attacks_that_reported_did_run(adversarial_batch):
    """The reporting attacks really ran in the sandbox (else the test above proves nothing)."""
    _, results, _ = adversarial_batch
    by_name = {r["extra_data"]["submission"]: r for r in results}
    for name in ("read_hidden", "network", "write_outside", "kill_everything"):
        assert attack_reports(by_name[name]), name


EXPECTED_MESSAGES = {
    "fork_bomb": "time limit",
    "infinite_loop": "time limit",
    "segfault": "segmentation fault",
    "output_flood": "output limit",
    "memory_bomb": "MemoryError",
    "symlink_in_tar": "link",
    "hardlink_in_tar": "link",
    "device_in_tar": "special file",
    "symlink_in_folder": "symlink",
    "path_traversal": "leaves its folder",
    "absolute_path": "absolute path",
    "zip_bomb": "zip bomb",
    "tar_bomb": "bomb",
    "oversized_file": "limit for a submitted file",
    "notebook_without_tags": "tagged",
    "wrong_homework": "hw2 submission",
    "sparse_tar": "sparse",
    "forged_answers": "output limit",
}


def test_feedback_says_which_limit_or_rule_was_hit(adversarial_batch):
    _, results, _ = adversarial_batch
    by_name = {r["extra_data"]["submission"]: r for r in results}
    for name, message in EXPECTED_MESSAGES.items():
        text = by_name[name]["output"] + "".join(t["output"] for t in by_name[name]["tests"])
        assert message in text, (name, text[:500])


def probe_source_lines(hw1) -> list[str]:
    """Every line of the probe module longer than 20 characters, as written AND as each
    unit's sandbox sees it (re-rendered by ast.unparse), case-name-only lines left out."""
    suite = hw1.suite
    texts = [suite.source] + [suite.unit_source(unit) for unit in suite.units]
    names = {case.name for cases in suite.cases.values() for case in cases}
    lines = {line.strip() for text in texts for line in text.splitlines()}
    return sorted(
        line
        for line in lines
        if len(line) > 20 and line.removeprefix("def ").removesuffix("():") not in names
    )


def expected_values(hw1) -> list[str]:
    """Reference answers as feedback would print them (numbers of at least 5 characters)."""
    from autograder.engine.answers import NDArrayAnswer

    shown = set()
    for answers in hw1.bundle.reference.values():
        for value in answers.values():
            if isinstance(value, NDArrayAnswer) and value.array.size:
                if value.array.dtype.kind == "f":
                    value = float(value.array.flat[0])
            if isinstance(value, float):
                text = f"{value:.8g}"
                if len(text.lstrip("-")) >= 5:
                    shown.add(text)
    return sorted(shown)


def test_hidden_probe_code_and_grader_paths_never_reach_feedback(hw1, adversarial_batch):
    """Neither the probe module (as written or as re-rendered for the sandbox) nor an
    expected value of a hidden case reaches any feedback, whatever channel was used."""
    _, results, out = adversarial_batch
    probe_lines = probe_source_lines(hw1)
    values = expected_values(hw1)
    assert probe_lines and values
    for result in results:
        name = result["extra_data"]["submission"]
        text = json.dumps(result["tests"]) + result["output"]
        text += (out / name / "feedback.txt").read_text()
        assert str(REPO_ROOT) not in text
        for line in probe_lines:
            assert line not in text, (name, line)
        for value in values:
            assert f"expected {value}" not in text, (name, value)


def test_the_exfiltration_attack_ran_and_got_nothing_out(hw1, adversarial_batch):
    _, results, out = adversarial_batch
    by_name = {r["extra_data"]["submission"]: r for r in results}
    result = by_name["exfiltrate_probes"]
    feedback = (out / "exfiltrate_probes" / "feedback.txt").read_text()
    assert "hidden probe code" in feedback or "unnamed exception type" in feedback  # it ran
    # No run of 24 characters of any probe line, in any rendering, in the feedback.
    windows = {line[i : i + 24] for line in probe_source_lines(hw1) for i in range(len(line) - 23)}
    for piece in (feedback, json.dumps(result["tests"])):
        found = [piece[i : i + 24] for i in range(len(piece) - 23) if piece[i : i + 24] in windows]
        assert found == [], found[:5]
    # The student-controlled text is bounded: grader-made lines plus at most 8 KB.
    cases = sum(len(c) for c in hw1.suite.cases.values())
    assert len(feedback) <= 8000 + 160 * cases + 400 * len(hw1.suite.units) + 1000


def test_feedback_and_reports_are_plain_bounded_text(adversarial_batch):
    """No terminal escape or control character (but newline and tab) reaches feedback.txt,
    results.json, the gradebook or the report, and no submission makes them large."""
    _, results, out = adversarial_batch
    control = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
    for result in results:
        name = result["extra_data"]["submission"]
        feedback = (out / name / "feedback.txt").read_text()
        stored = (out / name / "results.json").read_text()
        assert not control.search(feedback), (name, control.search(feedback))
        visible = json.loads(stored)
        shown = visible["output"] + "".join(t["output"] for t in visible["tests"])
        assert not control.search(shown), name
        assert len(stored) < 300_000 and len(feedback) < 60_000, (name, len(stored))
    gradebook = (out / "gradebook.csv").read_text()
    assert not control.search(gradebook.replace("\r\n", "\n"))
    assert (out / "report.html").stat().st_size < 2_000_000
    # No gradebook cell a spreadsheet would run as a formula (hostile_text tries).
    for row in csv.reader(io.StringIO(gradebook)):
        for cell in row:
            assert not (cell[:1] in ("=", "+", "@", "\t", "\r") or FORMULA_MINUS.match(cell)), cell
    hostile = (out / "hostile_text" / "feedback.txt").read_text()
    assert "calc" in hostile and "\x1b" not in hostile and "\u202e" not in hostile  # it ran


FORMULA_MINUS = re.compile(r"-(?!\d+(\.\d+)?$)")  # "-" then anything but a plain number


def test_memory_outside_the_address_space_is_counted_or_reported(adversarial_batch):
    """shared_memory_hoard holds memfd pages that RLIMIT_AS never sees: a memory cgroup stops
    it; where none can be made, every report says the memory limit is not enforced."""
    _, results, out = adversarial_batch
    by_name = {r["extra_data"]["submission"]: r for r in results}
    result = by_name["shared_memory_hoard"]
    text = result["output"] + "".join(t["output"] for t in result["tests"])
    if cgroups.enforcement() == "cgroup":
        assert "HOARDED" not in text and cgroups.MEMORY_MESSAGE in text, text[:800]
    else:
        assert MEMORY_NOT_ENFORCED in (out / "shared_memory_hoard" / "feedback.txt").read_text()
