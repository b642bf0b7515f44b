"""Files the user owns: what is atomic and what is appended.

- **Rewritten atomically**: configs, `run.json`, schedule mixtures, classifier
  weights and every result file go through `atomic_write_bytes`: a temporary file in
  the destination's folder, flushed and fsynced, then renamed over the destination
  (atomic on POSIX file systems). A crash mid-write leaves the old file or the new
  one, never a torn one, and no temporary behind. A new file gets the permissions the
  umask gives (0644 under umask 022); a rewritten one keeps its own.
- **Appended**: the training log `metrics.jsonl`, one JSON object per line, each line
  written whole with one `write` and flushed (`append_line`). A crash can at worst
  leave a partial last line, which the trainer drops when it resumes.
- **Checkpoints** are orbax's: each is written to a temporary directory and renamed
  when complete.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import IO


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file beside it, fsync, rename).

    **Raises:**

    `OSError` naming `path` and what failed (the folder is read-only, the disk is
    full, ...); the previous file, if any, is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.is_file() else _new_file_mode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OSError(error.errno, f"Cannot write {path}: {error.strerror}") from error
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"Cannot write {path}: {error.strerror}") from error
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def append_line(file: IO[str], line: str) -> None:
    """Append one whole line (`line` has no newline) with a single `write`, flushed."""
    file.write(line + "\n")
    file.flush()
