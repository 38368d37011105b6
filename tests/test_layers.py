"""The package's one direction of flow: no module imports one of a later stage (docs/contract.md, module map).

Imports for type hints only (`if TYPE_CHECKING:`) do not count: they never run.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "comp"

# Each stage may import its own and earlier ones. Leaves first: any layer may import them.
LAYERS = [
    {"__init__", "errors", "files", "device", "probs", "tta", "stats"},
    {"tasks"},
    {"config"},
    {"data"},
    {"models"},
    {"engine"},
    {"predict"},
    {"evaluate"},
    {"teach"},
    {"submission"},
    {"ship"},
    {"train", "seeds", "distill", "tune", "runs", "compare", "factors", "factor_table", "demo"},
    {"cli", "__main__"},
]


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: not in any layer; add its package to LAYERS and to docs/contract.md's module map")


def _runtime_imports(tree: ast.Module):
    """(module, line) of every `comp...` import outside `if TYPE_CHECKING:` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skipped |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("comp."):
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.startswith("comp."))


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


@pytest.mark.parametrize("path,module", list(_modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_module_imports_a_later_stage(path, module):
    mine = _layer(module)
    upward = [f"{m} (line {line})" for m, line in _runtime_imports(ast.parse(path.read_text())) if _layer(m) > mine]
    assert not upward, f"{module} imports a later stage: {', '.join(upward)}"


def test_the_check_sees_an_upward_import():
    tree = ast.parse("from comp.predict import predict\nif TYPE_CHECKING:\n    from comp.ship.export import export\n")
    assert [m for m, _ in _runtime_imports(tree)] == ["comp.predict"]
    assert _layer("comp.engine.fit") < _layer("comp.predict")
