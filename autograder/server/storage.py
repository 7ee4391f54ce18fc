"""Content-addressed storage of submitted archives: ``DATA/blobs/ab/<sha256>.zip``.

An archive is written to a temporary file, flushed to disk (``fsync``), then renamed into
place, so a blob that exists is whole; the same bytes submitted twice are stored once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class Storage:
    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / "blobs" / sha256[:2] / f"{sha256}.zip"

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.is_file() and target.stat().st_size == len(data):
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return digest

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()
