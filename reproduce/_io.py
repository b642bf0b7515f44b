"""Helpers of the reproduce scripts. Result files are written atomically (the
library's own writer, shared with checkpoints' metadata and schedule mixtures)."""

import argparse
import os
import platform
from pathlib import Path

from spectral_diffusion._io import (
    atomic_write_bytes as atomic_write_bytes,
    atomic_write_json as atomic_write_json,
    atomic_write_text as atomic_write_text,
)


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Lay out, write atomically (the format follows `path`'s suffix) and close."""
    import io

    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


def argument_parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The parser of `python -m <module>`, with the module docstring as its help."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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
