"""Every public symbol appears in the API docs (as optax's coverage check does)."""

import inspect
import re
from pathlib import Path

import spectral_diffusion as sd
import spectral_diffusion.data
import spectral_diffusion.metrics
import spectral_diffusion.train


#: The public subpackages: the only paths besides the flat `spectral_diffusion.X`.
SUBPACKAGES = (spectral_diffusion.data, spectral_diffusion.metrics, spectral_diffusion.train)


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
    names = public(sd, "spectral_diffusion")
    for module in SUBPACKAGES:
        names |= public(module, module.__name__)
    missing = sorted(names - documented())
    assert not missing, f"public symbols without an API page entry: {missing}"


def test_one_path_per_name():
    # No façade modules: every flat name is documented under `spectral_diffusion.`,
    # and a subpackage does not re-export a flat name.
    modules = {
        n
        for n, v in vars(sd).items()
        if inspect.ismodule(v) and v.__name__.startswith("spectral_diffusion.") and n[0] != "_"
    }
    assert modules <= {"data", "metrics", "train"}, modules
    flat = {n for n, v in vars(sd).items() if n[0] != "_" and not inspect.ismodule(v)}
    for module in SUBPACKAGES:
        shared = {n for n in vars(module) if not n.startswith("_") and n in flat}
        shared = {n for n in shared if getattr(module, n) is getattr(sd, n)}
        assert not shared, f"{module.__name__} re-exports {sorted(shared)}"
    pages = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    for old in ("spectral_diffusion.samplers.", "spectral_diffusion.schedules.", "sd.losses."):
        assert old not in pages, f"the docs still name {old}"


def test_documented_symbols_exist():
    for dotted in documented():
        module, _, name = dotted.rpartition(".")
        target = sd if module == "spectral_diffusion" else __import__(module, fromlist=["_"])
        assert hasattr(target, name), dotted
