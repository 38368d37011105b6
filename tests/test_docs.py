"""The repository stands on its own: every document a file points to is in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = re.compile(r"(?<![\w/.-])((?:\.\./)?[\w/.-]*\w\.md)\b")


def _files():
    for pattern in ("*.md", "docs/*.md", "comp/**/*.py", "configs/**/*.yaml", "benchmarks/*.py", "Makefile", "pyproject.toml"):
        yield from ROOT.glob(pattern)


def test_every_referenced_document_exists():
    missing = []
    for f in _files():
        for ref in DOC.findall(f.read_text(encoding="utf-8")):
            # Documents to read (README.md, DESIGN.md, docs/..., ../...), not files comp writes (results.md).
            if not (ref.startswith(("docs/", "../")) or Path(ref).stem.isupper()):
                continue
            if not ((ROOT / ref).is_file() or (f.parent / ref).is_file()):
                missing.append(f"{f.relative_to(ROOT)} -> {ref}")
    assert not missing, missing


def test_the_contract_names_every_command_the_cli_has():
    from typer.main import get_command

    from comp.cli import app

    contract = (ROOT / "docs" / "contract.md").read_text()
    commands = [name for name in get_command(app).commands if name != "data"] + ["data check"]
    assert all(f"`comp {name}" in contract for name in commands), commands
