"""The repository stands on its own, and its documents say what the code does.

- every document a file points to is in the repository;
- every markdown link in the README and the guides resolves (a file, and a heading for `#anchors`);
- every `comp ...` command line the documents show names a command the CLI has, with options it takes;
- the contract names every command.
"""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = re.compile(r"(?<![\w/.-])((?:\.\./)?[\w/.-]*\w\.md)\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
# A command line starts with comp (or python -m comp, .venv/bin/comp), or is launched by another tool with -m comp.
COMMAND = re.compile(r"(?:^\s*(?:\$\s+)?(?:python -m |\.venv/bin/)?|\s-m )comp((?:\s+\S+)+)")


def _files():
    for pattern in ("*.md", "docs/*.md", "comp/**/*.py", "configs/**/*.yaml", "benchmarks/*.py", "Makefile", "pyproject.toml"):
        yield from ROOT.glob(pattern)


def _documents() -> list[Path]:
    return sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("configs/**/*.md")])


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


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, re.M)}


def test_every_link_in_the_documents_resolves():
    broken = []
    for doc in _documents():
        for target in LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: not checked offline
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists() or (ROOT not in dest.parents and dest != ROOT):
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
            elif anchor and (dest.suffix != ".md" or anchor not in _anchors(dest)):
                broken.append(f"{doc.relative_to(ROOT)} -> {target} (no such heading)")
    assert not broken, broken


def _cli_options() -> dict[str, set[str]]:
    """{'train': {'--data', ...}, 'data check': {...}, '': global options} from the Typer app itself."""
    from typer.main import get_command

    from comp.cli import app

    group = get_command(app)

    def options(cmd) -> set[str]:
        return {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("-")} | {"--help"}

    found = {"": options(group)}
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            found.update({f"{name} {sub}": options(c) for sub, c in cmd.commands.items()})
        else:
            found[name] = options(cmd)
    return found


def _shown_commands(doc: Path) -> list[str]:
    """The `comp ...` command lines of a document: in code blocks (comments cut) and inline code spans."""
    text = doc.read_text(encoding="utf-8")
    lines = [re.split(r"\s#\s", line)[0] for block in FENCE.findall(text) for line in block.splitlines()]
    lines += SPAN.findall(FENCE.sub("", text))
    return [m.group(1) for line in lines for m in COMMAND.finditer(line)]


def _check(args: str, cli: dict[str, set[str]]) -> list[str]:
    text = args.replace("\\|", "|").rstrip("\\ ")  # a table's escaped |, a shell line continued with \\
    try:
        words = shlex.split(text)
    except ValueError:  # unbalanced quotes in a placeholder
        words = text.split()
    words = [w.strip("[]()") for w in words]
    while words and words[0].startswith("--"):  # global options: comp --debug train ...
        if words[0] not in cli[""]:
            return [f"unknown global option {words[0]}"]
        words = words[1:]
    if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
        return []  # `comp` as a word (e.g. "comp ..."), not a command line
    name = " ".join(words[:2]) if words[0] == "data" else words[0]
    if name not in cli:
        return [f"unknown command {name!r}"]
    problems = []
    for w in words[1:]:
        for opt in w.split("/") if w.startswith("--") else []:
            opt = opt.split("=")[0].rstrip(".,;:'\"")
            if opt.startswith("--") and opt not in cli[name]:
                problems.append(f"comp {name}: unknown option {opt}")
    return problems


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_the_documents_show_exists_with_its_options(doc):
    cli = _cli_options()
    problems = [f"comp{args}: {p}" for args in _shown_commands(doc) for p in _check(args, cli)]
    assert not problems, problems


def test_the_command_check_catches_what_it_should():
    cli = _cli_options()
    assert _check(" train configs/demo.yaml --data d --set a=b", cli) == []
    assert _check(" evaluate RUN... [--tta/--no-tta] [--merge mean|geometric]", cli) == []
    assert _check(" data check DIR --id-column C", cli) == []
    assert _check(" trian configs/demo.yaml", cli) == ["unknown command 'trian'"]
    assert _check(" predict runs/a --tta-view hflip", cli) == ["comp predict: unknown option --tta-view"]


def test_the_contract_names_every_command_the_cli_has():
    contract = (ROOT / "docs" / "contract.md").read_text()
    commands = [name for name in _cli_options() if name]
    assert all(f"`comp {name}" in contract for name in commands), commands
