"""Reading a submission: a folder, a ``.zip``, a ``.tar.gz``/``.tgz``/``.tar``, or a notebook.

A submission contributes only the files its homework accepts (``[submission] accept`` in
``assignment.toml``, e.g. ``needle/autograd.py``); everything else in it is ignored and
listed in the feedback. Those files are overlaid on the blank release to make the workspace
the probes run on, so a submission can never replace the probe runner, the tests, or a file
the homework does not let students edit.

Everything here treats the submission as hostile and fails with a ``SubmissionError`` whose
message a student can act on:

- archives: absolute paths, ``..``, symlinks, hard links, devices and FIFOs are refused; the
  number of entries, each entry's size, the total size and (zip) the compression ratio are
  checked *before* anything is decompressed, and reading stops at the limits anyway (headers
  can lie);
- folders: symlinks and special files are refused (a symlink to a grader file would otherwise
  be copied into the workspace);
- an accepted file larger than ``max_file_bytes`` is refused;
- a submission of another homework (its ``.assignment.json`` says so) is refused;
- a submission with none of the accepted files is refused.

Notebook convention: a code cell whose metadata has ``"tags": ["submission:needle/autograd.py"]``
contributes its source to that file; several cells with the same tag are concatenated in
notebook order (separated by a blank line).
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path

from autograder.engine.answers import element_bound, safe_name

MAX_ENTRIES = 5_000
MAX_TOTAL_BYTES = 50 * 1024 * 1024  # everything an archive may expand to
MAX_ARCHIVE_BYTES = 50 * 1024 * 1024  # the archive file itself
MAX_RATIO = 100  # zip: uncompressed / compressed, for entries above 1 MiB
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
MAX_NOTEBOOK_ELEMENTS = 1_000_000  # JSON values (json.loads costs ~60 bytes each)
MAX_NAME_CHARS = 160  # a member or file name as the grader keeps and shows it
MAX_METADATA_BYTES = 100_000  # .assignment.json
IGNORED_NAMES = {
    "__pycache__",
    ".ipynb_checkpoints",
    ".git",
    ".DS_Store",
    "__MACOSX",
    "submission_metadata.json",  # Gradescope's, read by the course tools (identities)
}
NOTEBOOK_TAG = "submission:"


class SubmissionError(ValueError):
    """The submission cannot be graded; the message says why, for the student."""


@dataclasses.dataclass
class Submission:
    """The accepted files of one submission, and notes about the rest."""

    name: str
    source: Path
    files: dict[str, bytes]
    notes: list[str]

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        return digest.hexdigest()


def shown(name: str) -> str:
    """A student-chosen name as the grader may store and show it: one line, no control
    characters, at most MAX_NAME_CHARS (cut ONCE, here, where it enters)."""
    return safe_name(name, MAX_NAME_CHARS)


def _clean_member_name(raw: str) -> str:
    """A safe relative POSIX path for an archive entry, or SubmissionError. Names longer
    than any accepted path are kept only as shown(); they can never be accepted."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise SubmissionError(f"the archive contains an absolute path: {shown(raw)!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SubmissionError(f"the archive contains a path that leaves its folder: {shown(raw)!r}")
    if any("\0" in p for p in parts):
        raise SubmissionError(f"the archive contains an invalid file name: {shown(raw)!r}")
    return posixpath.join(*parts) if parts else ""


def _ignored(relative: str) -> bool:
    return any(part in IGNORED_NAMES for part in relative.split("/")) or relative.endswith(".pyc")


class _Candidates:
    """Collects files by relative path and picks the accepted ones, with or without a single
    top-level folder (``hw1/needle/autograd.py`` is accepted as ``needle/autograd.py``)."""

    def __init__(self, accept: tuple[str, ...], max_file_bytes: int):
        self.accept = set(accept)
        self.max_file_bytes = max_file_bytes
        self.files: dict[str, bytes] = {}
        self.metadata: bytes | None = None
        self.others: list[str] = []

    def strip(self, relative: str, prefix: str) -> str:
        return relative[len(prefix) :] if prefix and relative.startswith(prefix) else relative

    def wanted(self, relative: str, prefix: str) -> str | None:
        relative = self.strip(relative, prefix)
        if relative in self.accept or relative == ".assignment.json":
            return relative
        return None

    def check_size(self, relative: str, size: int) -> None:
        if size > self.max_file_bytes and relative != ".assignment.json":
            raise SubmissionError(
                f"{relative} is {_size(size)}; the limit for a submitted file is "
                f"{_size(self.max_file_bytes)}"
            )

    def other(self, relative: str) -> None:
        """A file that is not graded: remembered (a bounded number, by shown name) for the
        feedback's note."""
        self.others.append(shown(relative))

    def candidate(self, relative: str) -> bool:
        """Could ``relative`` be accepted, at the root or under one top-level folder?"""
        if relative in self.accept or relative == ".assignment.json":
            return True
        head, _, rest = relative.partition("/")
        return bool(head) and (rest in self.accept or rest == ".assignment.json")

    def add(self, relative: str, data: bytes) -> None:
        if relative == ".assignment.json":
            self.metadata = data[:MAX_METADATA_BYTES]
            return
        self.check_size(relative, len(data))
        self.files[relative] = data


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


def _common_prefix(names: list[str], accept: tuple[str, ...]) -> str:
    """'' if accepted paths appear at the root, else the single top folder holding them."""
    accepted = set(accept)
    if any(name in accepted for name in names):
        return ""
    for name in names:
        for path in accepted:
            if name.endswith("/" + path):
                prefix = name[: -len(path)]
                if prefix.count("/") == 1:  # exactly one leading folder
                    return prefix
    return ""


def _read_directory(root: Path, found: _Candidates) -> None:
    names: list[tuple[str, Path]] = []
    for directory, subdirs, files in os.walk(root, followlinks=False):
        here = Path(directory)
        for name in list(subdirs):
            path = here / name
            if name in IGNORED_NAMES:
                subdirs.remove(name)
            elif path.is_symlink():
                subdirs.remove(name)
                raise SubmissionError(
                    f"the submission contains a symlink: {shown(str(path.relative_to(root)))}"
                )
        for name in files:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if _ignored(relative):
                continue
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise SubmissionError(f"the submission contains a symlink: {shown(relative)}")
            if not stat.S_ISREG(mode):
                raise SubmissionError(f"the submission contains a special file: {shown(relative)}")
            names.append((relative, path))
            if len(names) > MAX_ENTRIES:
                raise SubmissionError(f"the submission has more than {MAX_ENTRIES} files")
    prefix = _common_prefix([n for n, _ in names], tuple(found.accept))
    for relative, path in names:
        wanted = found.wanted(relative, prefix)
        if wanted is None:
            found.other(relative)
            continue
        found.check_size(wanted, path.stat().st_size)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            found.add(wanted, handle.read(found.max_file_bytes + 1))


def _read_bounded(handle, limit: int) -> bytes:
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise SubmissionError("an archive entry expands beyond its declared size")
    return data


def _read_zip(path: Path, found: _Candidates) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise SubmissionError(f"not a readable zip file ({error})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise SubmissionError(f"the archive has {len(infos)} entries (limit {MAX_ENTRIES})")
        total = 0
        entries = []
        for info in infos:
            name = _clean_member_name(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool stored none
            if kind == stat.S_IFLNK:
                raise SubmissionError(f"the archive contains a symlink: {shown(info.filename)}")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise SubmissionError(
                    f"the archive contains a special file: {shown(info.filename)}"
                )
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise SubmissionError(
                    f"the archive expands to more than {_size(MAX_TOTAL_BYTES)} (a zip bomb?)"
                )
            if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(
                info.compress_size, 1
            ):
                raise SubmissionError(
                    f"{shown(info.filename)} compresses "
                    f"{info.file_size // max(info.compress_size, 1)}:1 (a zip bomb?)"
                )
            if info.is_dir() or not name or _ignored(name):
                continue
            entries.append((name, info))
        names = [name for name, _ in entries]
        if len(set(names)) != len(names):
            raise SubmissionError("the archive contains the same path twice")
        prefix = _common_prefix(names, tuple(found.accept))
        for name, info in entries:
            wanted = found.wanted(name, prefix)
            if wanted is None:
                found.other(name)
                continue
            found.check_size(wanted, info.file_size)
            try:
                with archive.open(info) as handle:
                    found.add(wanted, _read_bounded(handle, info.file_size))
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise SubmissionError(
                    f"cannot read {shown(info.filename)} ({shown(str(error))})"
                ) from None


class _CountingReader(io.RawIOBase):
    """A file wrapper that refuses to deliver more than ``limit`` decompressed bytes."""

    def __init__(self, handle, limit: int):
        self.handle, self.limit, self.count = handle, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.handle.read(min(len(buffer), 1 << 16))
        self.count += len(data)
        if self.count > self.limit:
            raise SubmissionError(
                f"the archive expands to more than {_size(self.limit)} (a compression bomb?)"
            )
        buffer[: len(data)] = data
        return len(data)


def _open_decompressed(path: Path):
    with open(path, "rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _read_tar(path: Path, found: _Candidates) -> None:
    """Stream the archive once. Links, devices, FIFOs and sparse members are refused; only
    members that could be accepted are read (others are skipped, their data never held);
    the number of members, the decompressed stream and the bytes actually extracted (a
    sparse member's holes cost nothing in the stream) are all capped while streaming."""
    raw = _open_decompressed(path)
    stream = io.BufferedReader(_CountingReader(raw, MAX_TOTAL_BYTES + 10 * 1024 * 1024))
    members: dict[str, bytes] = {}
    others: list[str] = []
    count = 0
    extracted = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                # streaming: keep no TarInfo (nor its long name) around
                archive.members.clear()  # type: ignore[attr-defined]
                count += 1
                if count > MAX_ENTRIES:
                    raise SubmissionError(f"the archive has more than {MAX_ENTRIES} entries")
                name = _clean_member_name(member.name)
                if member.issym() or member.islnk():
                    raise SubmissionError(f"the archive contains a link: {shown(member.name)}")
                if member.isdir():
                    continue
                if member.issparse() or member.type in (tarfile.GNUTYPE_SPARSE,):
                    raise SubmissionError(
                        f"the archive contains a sparse file: {shown(member.name)}"
                    )
                if not member.isreg():
                    raise SubmissionError(
                        f"the archive contains a special file: {shown(member.name)}"
                    )
                if not name or _ignored(name):
                    continue
                if not found.candidate(name):
                    others.append(name if len(name) <= MAX_NAME_CHARS else shown(name))
                    continue  # its data is skipped by the stream, never held
                limit = MAX_METADATA_BYTES if name.endswith(".assignment.json") else None
                if limit is None and member.size > found.max_file_bytes:
                    found.check_size(name, member.size)  # raises
                size = min(member.size, limit) if limit else member.size
                extracted += size
                if extracted > MAX_TOTAL_BYTES:
                    raise SubmissionError(
                        f"the archive expands to more than {_size(MAX_TOTAL_BYTES)} (a bomb?)"
                    )
                if name in members:
                    raise SubmissionError("the archive contains the same path twice")
                handle = archive.extractfile(member)
                if handle is None:
                    members[name] = b""
                elif limit:
                    members[name] = handle.read(limit)
                else:
                    members[name] = _read_bounded(handle, member.size)
    except (tarfile.TarError, OSError, EOFError, zlib_error()) as error:
        raise SubmissionError(f"not a readable tar archive ({shown(str(error))})") from None
    finally:
        raw.close()
    prefix = _common_prefix(list(members), tuple(found.accept))
    for name, data in members.items():
        wanted = found.wanted(name, prefix)
        if wanted is None:
            found.other(name)
        else:
            found.add(wanted, data)
    for name in others:
        found.other(name)


def zlib_error():
    import zlib

    return zlib.error


def _read_notebook(path: Path, found: _Candidates) -> None:
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"the notebook is larger than {_size(MAX_NOTEBOOK_BYTES)}")
    data = path.read_bytes()
    if element_bound(data) > MAX_NOTEBOOK_ELEMENTS:
        raise SubmissionError("the notebook holds too many JSON values to be read")
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise SubmissionError(f"the notebook is not valid JSON ({shown(str(error))})") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise SubmissionError("the notebook has no cells (is it really a .ipynb file?)")
    pieces: dict[str, list[str]] = {}
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        metadata = cell.get("metadata")
        tags = metadata.get("tags", []) if isinstance(metadata, dict) else []
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(line) for line in source)
        if not isinstance(tags, list) or not isinstance(source, str):
            continue
        for tag in tags:
            if isinstance(tag, str) and tag.startswith(NOTEBOOK_TAG):
                target = _clean_member_name(tag[len(NOTEBOOK_TAG) :].strip())
                pieces.setdefault(target, []).append(source.rstrip("\n") + "\n")
    if not pieces:
        raise SubmissionError(
            "the notebook has no code cells tagged 'submission:<file>' (were the cell tags "
            "deleted? copy your code into a fresh copy of the homework notebook)"
        )
    for target, sources in pieces.items():
        if target in found.accept:
            found.add(target, "\n".join(sources).encode("utf-8"))
        else:
            found.other(f"{target} (notebook cells)")


def load_submission(
    path: str | Path, hw: str, accept, max_file_bytes: int, known: set[str] | None = None
) -> Submission:
    """Read the accepted files of the submission at ``path`` for homework ``hw``.

    ``known``: paths of the release; a submission that is a whole release folder is normal,
    so those files are ignored without a note."""
    path = Path(path)
    found = _Candidates(tuple(accept), max_file_bytes)
    if path.is_symlink():
        raise SubmissionError("the submission path is a symlink")
    if path.is_dir():
        _read_directory(path, found)
    elif not path.is_file():
        raise SubmissionError(f"no such file or folder: {path.name}")
    else:
        if path.stat().st_size > MAX_ARCHIVE_BYTES:
            raise SubmissionError(f"the submission file is larger than {_size(MAX_ARCHIVE_BYTES)}")
        suffixes = "".join(path.suffixes[-2:]).lower()
        if path.suffix.lower() == ".ipynb":
            _read_notebook(path, found)
        elif path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
            _read_zip(path, found)
        elif suffixes.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
            _read_tar(path, found)
        elif path.suffix == ".py" and path.name in {Path(a).name for a in accept}:
            matches = [a for a in accept if Path(a).name == path.name]
            found.add(matches[0], path.read_bytes()[: max_file_bytes + 1])
        else:
            raise SubmissionError(
                f"unsupported submission type {path.name!r}: submit a folder, a .zip, a .tar.gz "
                "or the homework notebook (.ipynb)"
            )
    if found.metadata is not None:
        try:
            declared = json.loads(found.metadata).get("name")
        except (ValueError, AttributeError):
            declared = None
        if isinstance(declared, str) and declared != hw:
            raise SubmissionError(f"this is a {shown(declared)[:60]} submission, not {hw}")
    if not found.files:
        raise SubmissionError(
            f"none of the files {hw} grades was found (expected: {', '.join(sorted(accept))}). "
            "Wrong homework, or the files are nested in extra folders?"
        )
    notes = []
    missing = sorted(set(accept) - set(found.files))
    if missing:
        notes.append("not submitted (the release's version is graded): " + ", ".join(missing))
    prefix = _common_prefix(found.others + list(found.files), tuple(accept))
    found.others = [o for o in found.others if o[len(prefix) :] not in (known or set())]
    if found.others:
        listed = ", ".join(sorted(found.others)[:8])
        more = f" and {len(found.others) - 8} more" if len(found.others) > 8 else ""
        notes.append(f"ignored (not graded in {hw}): {listed}{more}")
    name = path.name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip", ".ipynb"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = shown(name)[:100]
    return Submission(name or "submission", path, dict(sorted(found.files.items())), notes)
