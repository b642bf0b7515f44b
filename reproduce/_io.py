"""Result files are written atomically: a crash mid-write never leaves a torn file."""

import json
import os
import platform
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_savefig(figure, path: str | os.PathLike, **kwargs) -> Path:
    """`figure.savefig` through a temporary file (the format follows `path`'s suffix)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def run_metadata(module: str, argv: list[str]) -> dict:
    """What produced a results file: the command line and the library versions."""
    import importlib.metadata

    versions = {}
    for package in ("spectral_diffusion", "jax", "jaxlib", "equinox", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "command": " ".join(["python", "-m", module, *argv]),
        "python": platform.python_version(),
        "versions": versions,
    }
