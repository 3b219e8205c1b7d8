"""Small file helpers shared by the store, the trainer and the book: atomic writes, hashes.

A file written here is either the old file or the new one for any reader, never half of
each: the bytes go to a unique temporary file in the same folder, are flushed to disk, and
the temporary file is renamed over the target.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


class NoSpace(OSError):
    """The disk (or the user's quota) is full: a file could not be written, and nothing of it
    was left behind. The message names the folder and says to free space there."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no space left on the device"


def _no_space(path: Path, exc: OSError) -> NoSpace:
    return NoSpace(f"no space left to write {path.name} in {path.parent} ({exc.strerror or exc}); nothing of it "
                   "was kept: free space on that disk (or point NNLAB_RESULTS at another one) and run the "
                   "command again")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(path, exc) from None
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_space(path, exc) from None
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    """``obj`` as indented, key-sorted JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def json_hash(obj, length: int = 16) -> str:
    """The first ``length`` hex digits of the sha256 of ``obj`` as canonical JSON."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]
