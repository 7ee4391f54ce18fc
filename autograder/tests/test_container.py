"""The container sandbox grades a submission (podman or docker), on an image imported from a
local root file system, so no registry or network is needed. Skipped, with the reason, where
no container engine works."""

from __future__ import annotations

import pytest

from autograder.tests.conftest import make_submission

pytestmark = [pytest.mark.container, pytest.mark.hw1]


@pytest.fixture(scope="module")
def container_sandbox():
    from autograder.engine.container import ContainerSandbox, ContainerUnavailable, build_image

    try:
        image = build_image(local=True)
        return ContainerSandbox(image=image)
    except (ContainerUnavailable, OSError) as error:
        pytest.skip(f"no container engine works here: {error}")


def test_container_sandbox_grades_the_reference_with_full_marks(hw1, container_sandbox, tmp_path):
    from autograder.engine.grading import Grader

    folder = make_submission(
        tmp_path / "reference", hw1, reference_files=("needle/autograd.py", *hw1.accept)
    )
    with Grader(hw1.bundle, container_sandbox) as grader:
        results = grader.grade(folder, tmp_path / "out")
    assert results["score"] == hw1.max_score, results["output"]
    sandbox = results["extra_data"]["sandbox"]
    assert sandbox["kind"] == "container" and sandbox["isolated"]
    assert sandbox["image"] == container_sandbox.image_id


def test_container_command_carries_every_restriction(container_sandbox):
    from pathlib import Path

    from autograder.engine.sandbox import Mount, SandboxLimits

    limits = SandboxLimits(memory_bytes=512 * 1024 * 1024, processes=32)
    command = container_sandbox.command(["python"], [Mount(Path("/tmp"), "/work")], limits, "/work")
    text = " ".join(command)
    for option in (
        "--network none",
        "--read-only",
        "--user 1000:1000",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--pids-limit 32",
        "--cpus 1",
        "--tmpfs /tmp:",
        "target=/work,readonly",
    ):
        assert option in text, option
    memory = command[command.index("--memory") + 1]
    assert memory == command[command.index("--memory-swap") + 1]  # no swap beyond memory
