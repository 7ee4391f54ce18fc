"""Reading submissions: every format yields the same accepted files; hostile packaging is
refused with a message that says what is wrong."""

from __future__ import annotations

import json
import os
import tarfile
import zipfile

import pytest

from autograder.engine.submission import SubmissionError, load_submission

ACCEPT = ("needle/autograd.py", "apps/simple_ml.py")
FILES = {"needle/autograd.py": b"print('autograd')\n", "apps/simple_ml.py": b"X = 1\n"}


def load(path, **kwargs):
    return load_submission(path, "hw1", ACCEPT, 1000, **kwargs)


def write_folder(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_folder_zip_tar_and_notebook_give_the_same_files(tmp_path):
    folder = write_folder(tmp_path / "folder", {**FILES, "README.md": b"notes"})
    with zipfile.ZipFile(tmp_path / "sub.zip", "w") as archive:
        for name, data in FILES.items():
            archive.writestr(f"hw1/{name}", data)  # one top-level folder is fine
    with tarfile.open(tmp_path / "sub.tar.gz", "w:gz") as tar:
        tar.add(folder / "needle", "needle")
        tar.add(folder / "apps", "apps")
    cells = [
        {
            "cell_type": "code",
            "metadata": {"tags": [f"submission:{name}"]},
            "source": data.decode(),
            "outputs": [],
        }
        for name, data in FILES.items()
    ]
    cells.append({"cell_type": "code", "metadata": {}, "source": "scratch = 1", "outputs": []})
    (tmp_path / "sub.ipynb").write_text(json.dumps({"cells": cells, "nbformat": 4}))
    for path in (folder, tmp_path / "sub.zip", tmp_path / "sub.tar.gz", tmp_path / "sub.ipynb"):
        submission = load(path)
        assert submission.files == FILES, path.name
    assert load(folder).sha256 == load(tmp_path / "sub.zip").sha256
    assert any("README.md" in note for note in load(folder).notes)


def test_notebook_cells_with_the_same_tag_are_concatenated_in_order(tmp_path):
    cells = [
        {"cell_type": "code", "metadata": {"tags": ["submission:apps/simple_ml.py"]}, "source": s}
        for s in ("A = 1\n", ["B = ", "2\n"])
    ]
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": cells}))
    assert load(tmp_path / "nb.ipynb").files == {"apps/simple_ml.py": b"A = 1\n\nB = 2\n"}


def test_missing_files_are_noted_and_no_files_is_an_error(tmp_path):
    partial = load(write_folder(tmp_path / "p", {"apps/simple_ml.py": b"X = 1\n"}))
    assert partial.files == {"apps/simple_ml.py": b"X = 1\n"}
    assert any("needle/autograd.py" in note for note in partial.notes)
    with pytest.raises(SubmissionError, match="none of the files"):
        load(write_folder(tmp_path / "e", {"src/other.py": b""}))


def test_release_files_in_a_whole_release_folder_are_not_noted(tmp_path):
    folder = write_folder(tmp_path / "f", {**FILES, "tests/test_x.py": b"", "mine.txt": b""})
    notes = load(folder, known={"tests/test_x.py"}).notes
    assert not any("test_x" in n for n in notes) and any("mine.txt" in n for n in notes)


@pytest.mark.parametrize(
    "make, message",
    [
        ("zip_traversal", "leaves its folder"),
        ("zip_absolute", "absolute path"),
        ("zip_symlink", "symlink"),
        ("zip_ratio", "bomb"),
        ("tar_symlink", "link"),
        ("tar_fifo", "special file"),
        ("folder_symlink", "symlink"),
        ("oversized", "limit for a submitted file"),
        ("not_an_archive", "unsupported submission type"),
        ("broken_zip", "not a readable zip"),
        ("broken_notebook", "not valid JSON"),
        ("other_homework", "hw2 submission, not hw1"),
    ],
)
def test_hostile_or_broken_submissions_are_refused(tmp_path, make, message):
    path = tmp_path / "sub"
    if make.startswith("zip"):
        path = tmp_path / "sub.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("apps/simple_ml.py", FILES["apps/simple_ml.py"])
            if make == "zip_traversal":
                archive.writestr("needle/../../escape.py", "x")
            elif make == "zip_absolute":
                archive.writestr("/etc/cron.d/x", "x")
            elif make == "zip_symlink":
                info = zipfile.ZipInfo("needle/autograd.py")
                info.external_attr = 0o120777 << 16
                archive.writestr(info, "/etc/passwd")
            elif make == "zip_ratio":
                archive.writestr("needle/autograd.py", bytes(20 * 1024 * 1024))
    elif make.startswith("tar"):
        path = tmp_path / "sub.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("apps/simple_ml.py")
            if make == "tar_symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            else:
                info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    elif make == "folder_symlink":
        write_folder(path, {"needle/autograd.py": b""})
        (path / "apps").mkdir()
        os.symlink("/etc/passwd", path / "apps" / "simple_ml.py")
    elif make == "oversized":
        write_folder(path, {"apps/simple_ml.py": b"#" * 5000})
    elif make == "not_an_archive":
        path = tmp_path / "sub.rar"
        path.write_bytes(b"Rar!")
    elif make == "broken_zip":
        path = tmp_path / "sub.zip"
        path.write_bytes(b"PK\x03\x04 truncated")
    elif make == "broken_notebook":
        path = tmp_path / "sub.ipynb"
        path.write_text("{not json")
    elif make == "other_homework":
        write_folder(path, {**FILES, ".assignment.json": json.dumps({"name": "hw2"}).encode()})
    with pytest.raises(SubmissionError, match=message):
        load(path)
