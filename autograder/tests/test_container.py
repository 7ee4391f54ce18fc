"""The container sandbox grades submissions (podman or docker) on the local image — Debian
minbase + the C++ toolchain + this machine's runtime, made without any registry — with the
OCI runtime the probe picks (podman as Debian installs it: crun present) and with runc
forced. Skipped, with the reason, only where no container engine runs at all; once an
engine answers, failing to build the image or to start a container is a failure.

The first run on a fresh machine builds the image (debootstrap, ~2-6 minutes; cached under
build/autograder/rootfs and in the engine's image store)."""

from __future__ import annotations

import shutil

import pytest

from autograder.authoring.bundle import Homework
from autograder.engine.grading import Grader
from autograder.engine.sandbox import MiB, Mount, SandboxLimits
from autograder.tests.conftest import make_submission

pytestmark = [pytest.mark.container, pytest.mark.long]


@pytest.fixture(scope="module")
def engine():
    from autograder.engine.container import ContainerUnavailable, detect_engine

    try:
        return detect_engine()
    except ContainerUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def image(engine):
    from autograder.engine.container import build_image

    return build_image(engine=engine, local=True)


@pytest.fixture(scope="module")
def container_sandbox(engine, image):
    """The runtime the probe picks (on Debian's podman: crun first, runc where crun fails)."""
    from autograder.engine.container import ContainerSandbox

    return ContainerSandbox(engine=engine, image=image)


@pytest.fixture(scope="module")
def runc_sandbox(engine, image, container_sandbox):
    from autograder.engine.container import ContainerSandbox

    if not shutil.which("runc"):
        pytest.skip("runc is not installed (make system-deps installs it)")
    if container_sandbox.choice.runtime == "runc" and container_sandbox.choice.cgroups:
        pytest.skip("the probed sandbox already runs runc with cgroups (graded above)")
    return ContainerSandbox(engine=engine, image=image, runtime="runc")


@pytest.fixture(scope="module")
def hw0():
    return Homework.load("hw0")


def _grade(homework, sandbox, folder, out):
    with Grader(homework.bundle, sandbox) as grader:
        results = grader.grade(folder, out)
    extra = results["extra_data"]["sandbox"]
    assert extra["kind"] == "container" and extra["isolated"]
    assert extra["image"] == sandbox.image_id
    return results


@pytest.mark.hw1
@pytest.mark.parametrize("which", ["probed", "runc"])
def test_container_grades_hw1_reference_with_full_marks(hw1, which, request, tmp_path):
    sandbox = request.getfixturevalue("container_sandbox" if which == "probed" else "runc_sandbox")
    folder = make_submission(
        tmp_path / "reference", hw1, reference_files=("needle/autograd.py", *hw1.accept)
    )
    results = _grade(hw1, sandbox, folder, tmp_path / "out")
    assert results["score"] == hw1.max_score, results["output"]


@pytest.mark.hw0
@pytest.mark.parametrize("which", ["probed", "runc"])
def test_container_compiles_and_grades_hw0_cpp(hw0, which, request, tmp_path):
    """hw0's pybind11 module is compiled inside the container: full marks for the reference."""
    sandbox = request.getfixturevalue("container_sandbox" if which == "probed" else "runc_sandbox")
    folder = make_submission(tmp_path / "reference", hw0, hw0.accept)
    results = _grade(hw0, sandbox, folder, tmp_path / "out")
    assert results["extra_data"]["built"] is True, results["output"]
    assert results["score"] == pytest.approx(hw0.max_score), results["output"]


@pytest.mark.hw0
def test_container_reports_a_compile_error_as_feedback(hw0, container_sandbox, tmp_path):
    cpp = "src/simple_ml_ext.cpp"
    broken = hw0.reference[cpp].decode().replace("{", "{ this is not C++;", 1).encode()
    folder = make_submission(tmp_path / "broken", hw0, ("src/simple_ml.py",), {cpp: broken})
    results = _grade(hw0, container_sandbox, folder, tmp_path / "out")
    assert results["extra_data"]["built"] is False
    assert "did not compile" in results["output"], results["output"]
    assert results["score"] == pytest.approx(
        hw0.max_score - hw0.points["softmax_regression_epoch_cpp"]
    )


def _run(sandbox, code: str, limits: SandboxLimits, tmp_path):
    return sandbox.run(
        ["/opt/runtime/bin/python3", "-I", "-S", "-B", "-c", code],
        [Mount(tmp_path, "/work")],
        limits,
        cwd="/work",
    )


def test_probe_says_what_it_enforces(container_sandbox):
    choice = container_sandbox.choice
    assert choice.describe() in container_sandbox.describe()
    if shutil.which("crun") and choice.runtime != "crun":
        assert "crun" in choice.note  # why crun was passed over
    if choice.enforced:
        assert "limits by cgroups" in container_sandbox.describe()
    else:
        assert "RLIMIT_AS only" in container_sandbox.describe()


def test_container_memory_and_pids_limits_hold(container_sandbox, tmp_path):
    """Without the runner (so without RLIMIT_AS), only the cgroup stops the allocation."""
    if not container_sandbox.choice.enforced:
        pytest.skip(f"no cgroup limits here: {container_sandbox.choice.describe()}")
    limits = SandboxLimits(wall_s=60, memory_bytes=256 * MiB, processes=16)
    big = _run(container_sandbox, "b = bytearray(900 << 20); print('allocated')", limits, tmp_path)
    assert "allocated" not in big.output and big.returncode != 0
    forks = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(40):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(2); os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print('forked', n)\n"
    )
    result = _run(container_sandbox, forks, limits, tmp_path)
    assert "forked" in result.output, result.output
    assert int(result.output.split("forked")[1].split()[0]) < 16


def test_container_command_carries_every_restriction(container_sandbox):
    from pathlib import Path

    limits = SandboxLimits(memory_bytes=512 * MiB, processes=32)
    command = container_sandbox.command(["python"], [Mount(Path("/tmp"), "/work")], limits, "/work")
    text = " ".join(command)
    for option in (
        "--network none",
        "--read-only",
        "--user 1000:1000",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--tmpfs /tmp:",
        "target=/work,readonly",
    ):
        assert option in text, option
    if container_sandbox.choice.cgroups:
        assert "--pids-limit 32" in text and "--cpus 1" in text
        memory = command[command.index("--memory") + 1]
        assert memory == command[command.index("--memory-swap") + 1]  # no swap beyond memory
    else:
        assert "--cgroups=disabled" in text
