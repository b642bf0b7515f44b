"""The import graph follows the design order (STYLE.md, docs/architecture.md): no module
of the library imports one of a higher layer, and none imports the experiments."""

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parent.parent / "spectral_diffusion"

#: The layers, lowest first: a module may import its own layer and those below.
#: Every module of the package must be listed (by itself or by its subpackage).
LAYERS = {
    "_custom_types": 0,
    "_checks": 0,
    "_io": 0,
    "_compile": 0,
    "_spectrum": 1,
    "_inception": 1,
    "data": 1,
    "_bounds": 2,
    "_schedules": 3,
    "_nets": 4,
    "_proposals": 4,
    "_mixture": 4,
    "_losses": 4,
    "_samplers": 5,
    "_gaussian": 6,
    "_diagnostics": 6,
    "_metrics": 6,
    "_classifier": 6,
    "_optimal": 7,
    "metrics": 7,
    "train": 7,
    "__init__": 8,
}


def module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts


def layer(parts: list[str]) -> int:
    if not parts:
        return LAYERS["__init__"]
    return LAYERS[parts[0]]


def imports(path: Path) -> list[tuple[list[str], int]]:
    """(target module parts inside the package, line) for every library import."""
    parts = module_name(path)
    package = parts if path.name == "__init__.py" and parts != ["__init__"] else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if node.module is None:  # `from . import data`: the submodules themselves
                found += [(target + [alias.name], node.lineno) for alias in node.names]
            else:
                found.append((target, node.lineno))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top, *rest = (name or "").split(".")
                assert top != "reproduce", f"{path}:{node.lineno} imports the experiments"
                if top == "spectral_diffusion":
                    found.append((rest, node.lineno))
    return found


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        parts = module_name(path)
        assert parts[0] in LAYERS, f"{path} is in no layer of {sorted(LAYERS)}"


def test_no_module_imports_a_higher_layer():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer(module_name(path)) if path != PACKAGE / "__init__.py" else 8
        for target, line in imports(path):
            if layer(target) > own:
                rel = path.relative_to(PACKAGE.parent)
                violations.append(f"{rel}:{line} (layer {own}) imports {target} ({layer(target)})")
    assert not violations, "\n".join(violations)


def test_the_walk_sees_imports():
    # The check above is only as good as its parser: it must see these edges.
    samplers = imports(PACKAGE / "_samplers" / "_ddim.py")
    assert ["_schedules"] in [target for target, _ in samplers]
    trainer = {tuple(t) for t, _ in imports(PACKAGE / "train" / "_trainer.py")}
    assert ("data",) in trainer and ("_compile",) in trainer
