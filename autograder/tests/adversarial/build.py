"""Assemble the adversarial submissions of hw1 into a folder, ready for ``autograder grade``.

Two kinds of attack live here:

- *payload* attacks: the sub-folders of this folder. Each holds files at paths hw1 accepts
  (``apps/simple_ml.py``, ``needle/autograd.py``, ...). A file whose first line is
  ``# adversarial: append to the release's version`` is the blank release's version of that
  file followed by the payload (a student who edits the right file and adds malicious code);
  any other file is submitted as is.
- *packaging* attacks, made by the functions below because they cannot be stored as plain
  files: links, path traversal, bombs, oversized files, broken or foreign notebooks.

``build_all(dest, blank)`` writes every attack under ``dest`` and returns their paths.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPEND_MARKER = "# adversarial: append to the release's version"
REFERENCE_FILE = "/work/main/library/apps/simple_ml.py"  # what a link would point at


def payload_attacks() -> list[str]:
    return sorted(p.name for p in HERE.iterdir() if p.is_dir() and not p.name.startswith("_"))


def build_payload(name: str, dest: Path, blank: dict[str, bytes]) -> Path:
    target = dest / name
    for path in sorted((HERE / name).rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(HERE / name).as_posix()
        text = path.read_text()
        if text.startswith(APPEND_MARKER):
            text = blank[relative].decode() + "\n\n" + text
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(text)
    return target


def _tar_add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def symlink_in_tar(dest: Path, blank: dict[str, bytes]) -> Path:
    path = dest / "symlink_in_tar.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _tar_add_bytes(tar, "needle/autograd.py", blank["needle/autograd.py"])
        link = tarfile.TarInfo("apps/simple_ml.py")
        link.type, link.linkname = tarfile.SYMTYPE, REFERENCE_FILE
        tar.addfile(link)
    return path


def hardlink_in_tar(dest: Path, blank: dict[str, bytes]) -> Path:
    path = dest / "hardlink_in_tar.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        link = tarfile.TarInfo("apps/simple_ml.py")
        link.type, link.linkname = tarfile.LNKTYPE, REFERENCE_FILE.lstrip("/")
        tar.addfile(link)
    return path


def device_in_tar(dest: Path, blank: dict[str, bytes]) -> Path:
    path = dest / "device_in_tar.tar"
    with tarfile.open(path, "w") as tar:
        _tar_add_bytes(tar, "apps/simple_ml.py", blank["apps/simple_ml.py"])
        device = tarfile.TarInfo("needle/autograd.py")
        device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null
        tar.addfile(device)
    return path


def symlink_in_folder(dest: Path, blank: dict[str, bytes]) -> Path:
    """A folder whose apps/simple_ml.py links to the reference: following it would give the
    reference's full marks to this submission."""
    folder = dest / "symlink_in_folder"
    (folder / "apps").mkdir(parents=True)
    (folder / "needle").mkdir()
    (folder / "needle" / "autograd.py").write_bytes(blank["needle/autograd.py"])
    os.symlink(REFERENCE_FILE, folder / "apps" / "simple_ml.py")
    return folder


def path_traversal_zip(dest: Path, blank: dict[str, bytes]) -> Path:
    path = dest / "path_traversal.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("needle/autograd.py", blank["needle/autograd.py"])
        archive.writestr("../../../../tmp/ADVERSARIAL-TRAVERSAL.py", "print('escaped')\n")
    return path


def absolute_path_tar(dest: Path, blank: dict[str, bytes]) -> Path:
    path = dest / "absolute_path.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _tar_add_bytes(tar, "/tmp/ADVERSARIAL-ABSOLUTE.py", b"print('escaped')\n")
        _tar_add_bytes(tar, "needle/autograd.py", blank["needle/autograd.py"])
    return path


def zip_bomb(dest: Path, blank: dict[str, bytes]) -> Path:
    """~200 MB of zeros per entry, a few hundred KB on disk."""
    path = dest / "zip_bomb.zip"
    zeros = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("needle/autograd.py", "w", force_zip64=True) as handle:
            for _ in range(200):
                handle.write(zeros)
    return path


def tar_bomb(dest: Path, blank: dict[str, bytes]) -> Path:
    """A .tar.gz whose tar stream is far larger than any submission (gzip of zeros)."""
    path = dest / "tar_bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("data/zeros.bin")
        info.size = 120 * 1024 * 1024

        class Zeros(io.RawIOBase):
            def readable(self):
                return True

            def readinto(self, buffer):
                buffer[:] = bytes(len(buffer))
                return len(buffer)

        tar.addfile(info, io.BufferedReader(Zeros()))
        _tar_add_bytes(tar, "needle/autograd.py", blank["needle/autograd.py"])
    return path


def oversized_file(dest: Path, blank: dict[str, bytes]) -> Path:
    folder = dest / "oversized_file"
    (folder / "needle").mkdir(parents=True)
    padding = b"# " + b"x" * 98 + b"\n"
    (folder / "needle" / "autograd.py").write_bytes(blank["needle/autograd.py"] + padding * 20000)
    return folder


def notebook_without_tags(dest: Path, blank: dict[str, bytes]) -> Path:
    path = dest / "notebook_without_tags.ipynb"
    cell = {"cell_type": "code", "metadata": {}, "source": "print('hi')\n", "outputs": []}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}))
    return path


def wrong_homework(dest: Path, blank: dict[str, bytes]) -> Path:
    folder = dest / "wrong_homework"
    (folder / "needle").mkdir(parents=True)
    (folder / "needle" / "autograd.py").write_bytes(blank["needle/autograd.py"])
    (folder / ".assignment.json").write_text(json.dumps({"name": "hw2"}))
    return folder


def sparse_tar(dest: Path, blank: dict[str, bytes]) -> Path:
    """PAX sparse members: 2.7 GB once extracted from a ~60 KB .tar.gz (the holes cost nothing
    in the compressed stream)."""
    path = dest / "sparse_tar.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        _tar_add_bytes(tar, "needle/autograd.py", blank["needle/autograd.py"])
        for number in range(3000):
            name = f"data/part{number:05d}.bin"
            real_size = 900_000
            data = f"1\n{real_size - 1}\n1\n".encode().ljust(512, b"\0") + b"x"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = {
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": name,
                "GNU.sparse.realsize": str(real_size),
            }
            tar.addfile(info, io.BytesIO(data))
    return path


def long_member_name(dest: Path, blank: dict[str, bytes]) -> Path:
    """A few KB of .tar.gz whose ignored members have multi-megabyte names full of terminal
    escapes: they once became a 490 MB results.json and a 392 MB report.html."""
    path = dest / "long_member_name.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        _tar_add_bytes(tar, "needle/autograd.py", blank["needle/autograd.py"])
        for number in range(8):
            name = f"notes{number}/\x1b[2J\x1b[Hscore 100 / 100\r" + "\x07A" * 2_000_000
            _tar_add_bytes(tar, name, b"x")
    return path


PACKAGING_ATTACKS = [
    symlink_in_tar,
    hardlink_in_tar,
    device_in_tar,
    symlink_in_folder,
    path_traversal_zip,
    absolute_path_tar,
    zip_bomb,
    tar_bomb,
    oversized_file,
    notebook_without_tags,
    wrong_homework,
    sparse_tar,
    long_member_name,
]


def build_all(dest: Path, blank: dict[str, bytes]) -> list[Path]:
    """Every attack, written under ``dest``; returns the submission paths."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = [build_payload(name, dest, blank) for name in payload_attacks()]
    paths += [make(dest, blank) for make in PACKAGING_ATTACKS]
    return paths
