"""Every public symbol appears in the API docs (as optax's coverage check does)."""

import inspect
import re
from pathlib import Path

import spectral_diffusion as sd
import spectral_diffusion.data
import spectral_diffusion.gaussian
import spectral_diffusion.metrics
import spectral_diffusion.train


DOCS = Path(__file__).resolve().parent.parent / "docs"


def documented() -> set[str]:
    text = "\n".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    return set(re.findall(r"^:::\s*([\w.]+)", text, flags=re.MULTILINE))


def public(module, prefix):
    return {
        f"{prefix}.{name}"
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and callable(value)
    }


def test_every_public_symbol_is_documented():
    names = public(sd, "spectral_diffusion") | public(
        spectral_diffusion.data, "spectral_diffusion.data"
    )
    missing = sorted(names - documented())
    assert not missing, f"public symbols without an API page entry: {missing}"


def test_documented_symbols_exist():
    for dotted in documented():
        module, _, name = dotted.rpartition(".")
        target = sd if module == "spectral_diffusion" else __import__(module, fromlist=["_"])
        assert hasattr(target, name), dotted
