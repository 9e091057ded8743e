"""The repository's documents are self-contained: nothing cites a document it does not have.

Comments and docstrings (Python: every comment and string token; Lua, SQL, Makefile,
Dockerfile, YAML and the rest: the whole text) and Markdown files are read for

- a document path (a name ending in `.md`) that no file of the repository answers;
- a test module's path (`tests/....py`) that is not there, say after the tests moved;
- a reference to a numbered issue, whose number a reader of the code cannot resolve: the
  reason belongs in the sentence, or a link to the section of docs/ that gives it;
- in Markdown, a relative link whose file, or whose `#anchor` heading, is not there.

Nothing is imported; the files are read as text.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers", "ui", "services", "dal", "tests", "bench", "scripts", "deploy")
SKIP_DIRS = frozenset(
    {".venv", ".git", "__pycache__", ".ruff_cache", ".mypy_cache", "node_modules"}
)
# Files read as whole text besides Python and Markdown (configuration, scripts, SQL, Lua).
TEXT_SUFFIXES = frozenset({".lua", ".sql", ".yml", ".yaml", ".toml", ".sh", ".js", ".html"})
ROOT_FILES = ("Makefile", "Dockerfile", "docker-compose.yml", "pyproject.toml", ".env.example")

ISSUE = re.compile(r"\b[Ii]ssues?\s+#?\d+")
DOCUMENT = re.compile(r"(?<![\w./-])((?:\.{1,2}/)?[\w./-]*\w\.md)\b")
TEST_PATH = re.compile(r"(?<![\w./-])(tests/[\w/-]*\w\.py)\b")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _walk(base: Path) -> Iterator[Path]:
    for path in sorted(base.iterdir()):
        if path.name in SKIP_DIRS:
            continue
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path


def _files() -> list[Path]:
    found = [ROOT / name for name in ROOT_FILES if (ROOT / name).is_file()]
    found += sorted(ROOT.glob("*.md"))
    for name in (*PACKAGES, "docs", ".ci"):
        if (ROOT / name).is_dir():
            found += _walk(ROOT / name)
    return found


FILES = _files()
MARKDOWN = frozenset(
    path.relative_to(ROOT).as_posix() for path in _walk(ROOT) if path.suffix == ".md"
)


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of what a reader reads as prose: comments and strings of Python, the whole
    text of anything else; binary files give nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    if not (ISSUE.search(text) or ".md" in text or "tests/" in text):
        return []  # nothing to look at (most files): no need to tokenize
    if path.suffix == ".py":
        tokens = tokenize.generate_tokens(io.StringIO(text).readline)
        return [
            (token.start[0], token.string)
            for token in tokens
            if token.type in (tokenize.COMMENT, tokenize.STRING)
        ]
    if path.suffix == ".md" or path.suffix in TEXT_SUFFIXES or path.name in ROOT_FILES:
        return [(1, text)]
    if path.parent.name in (".ci", "bin") or text.startswith("#!"):
        return [(1, text)]
    return []


def _line(start: int, text: str, offset: int) -> int:
    return start + text.count("\n", 0, offset)


def _document_exists(name: str, where: Path) -> bool:
    name = name.removeprefix("./")
    if (where.parent / name).exists() or (ROOT / name).exists():
        return True
    # A bare or partial path (bench/'s own README, named by its file name alone) names the
    # file whose path ends with it.
    return any(md == name or md.endswith("/" + name) for md in MARKDOWN)


def _problems(path: Path) -> Iterator[str]:
    rel = path.relative_to(ROOT).as_posix()
    for start, text in _prose(path):
        for match in ISSUE.finditer(text):
            yield f"{rel}:{_line(start, text, match.start())}: issue number {match.group()!r}"
        for match in DOCUMENT.finditer(text):
            name = match.group(1)
            if not _document_exists(name, path):
                line = _line(start, text, match.start())
                yield f"{rel}:{line}: names {name}, which the repository does not have"
        for match in TEST_PATH.finditer(text):
            if not (ROOT / match.group(1)).is_file():
                line = _line(start, text, match.start())
                yield f"{rel}:{line}: names {match.group(1)}, which the repository does not have"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        slug, n = _slug(heading), 1
        while slug in anchors:  # GitHub numbers a repeated heading: slug-1, slug-2
            slug, n = f"{_slug(heading)}-{n}", n + 1
        anchors.add(slug)
    return anchors


def _broken_links(path: Path) -> Iterator[str]:
    rel = path.relative_to(ROOT).as_posix()
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    for match in LINK.finditer(text):
        target = match.group(1).strip("<>")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        where = f"{rel}: link {target!r}"
        if not linked.exists():
            yield f"{where}: no such file"
        elif not linked.is_relative_to(ROOT):
            yield f"{where}: outside the repository"
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            yield f"{where}: no heading with that anchor in {linked.relative_to(ROOT)}"


def test_the_scan_reads_the_code_and_the_documents() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in FILES}
    for expected in (
        "README.md",
        "ARCHITECTURE.md",
        "docs/contracts.md",
        "Makefile",
        "Dockerfile",
        "bot/config.py",
        "dal/redis/lua/check_in.lua",
        "tests/project/test_docs.py",
    ):
        assert expected in names


@pytest.mark.parametrize(
    ("text", "found"),
    [
        # Spelled in two pieces, so that this file does not cite them itself.
        ("# the cap (iss" + "ue 12): once", ["iss" + "ue 12"]),
        ('"""Iss' + 'ue 23, item 1: five wrong passwords."""', ["Iss" + "ue 23"]),
        ("-- see iss" + "ues 12 and 24", ["iss" + "ues 12"]),
        ("-- see iss" + "ue #7", ["iss" + "ue #7"]),
        ("# no tracker number here: the issue is the lateness rule", []),
    ],
)
def test_an_issue_number_is_caught(text: str, found: list[str]) -> None:
    assert [m.group() for m in ISSUE.finditer(text)] == found


def test_a_missing_document_is_caught_and_a_present_one_is_not() -> None:
    here = ROOT / "bot" / "config.py"
    assert _document_exists("docs/telegram.md", here)
    assert _document_exists("README.md", ROOT / "bench" / "loops.py")
    assert not _document_exists("docs/nowhere" + ".md", here)
    assert not _document_exists("TELEGRAM" + ".md", here)
    assert [m.group(1) for m in DOCUMENT.finditer("(see DESIGN" + ".md, section 3)")] == [
        "DESIGN" + ".md"
    ]


def test_anchors_follow_github_headings() -> None:
    assert "mini-apps" in _anchors(ROOT / "docs" / "telegram.md")
    assert _slug("Finalization is exactly once") == "finalization-is-exactly-once"
    assert _slug("1. Sign-on") == "1-sign-on"


def test_no_comment_docstring_or_document_cites_what_is_not_there() -> None:
    problems = [problem for path in FILES for problem in _problems(path)]
    assert not problems, "\n".join(problems)


def test_relative_markdown_links_resolve() -> None:
    broken = [problem for path in FILES if path.suffix == ".md" for problem in _broken_links(path)]
    assert not broken, "\n".join(broken)


def _walks() -> dict[str, list[str]]:
    """ARCHITECTURE.md's walks: each `### Walk:` section's numbered hops, by the file each
    hop names first."""
    walks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            current = walks.setdefault(line, []) if line.startswith("### Walk:") else None
            continue
        hop = re.match(r"\d+\. `([^`]+)`", line)
        if current is not None and hop:
            current.append(hop.group(1))
    return walks


def test_the_architecture_walks_name_real_files_and_never_go_back() -> None:
    """A newcomer follows a check-in and a result notice hop by hop: every hop names a file the
    repository has, and no walk returns to a file it has left."""
    walks = _walks()
    assert len(walks) >= 2, "the check-in and the result-notice walks are missing"
    for title, hops in walks.items():
        assert len(hops) >= 8, f"{title}: {hops}"
        missing = [hop for hop in hops if not (ROOT / hop).is_file()]
        assert not missing, f"{title} names files the repository does not have: {missing}"
        again = sorted({hop for hop in hops if hops.count(hop) > 1})
        assert not again, f"{title} goes back to {again}"
