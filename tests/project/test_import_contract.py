"""Imports point one way: bot -> handlers -> ui -> services -> dal (docs/contracts.md).

A package may import its own modules and those of any package to its right, never one to its
left. Only the composition root (`bot.app`, `bot.__main__`) imports `handlers`; the rest of
`bot/` reaches handlers' needs through `ui/` and `services/`, and handlers reach `bot/`'s
objects through the Dispatcher's workflow data (handlers/deps.py), never by import.

Every import counts: at module level, inside functions, under `if TYPE_CHECKING:`, relative
ones. Every module counts, sub-packages' too (`services/attendance/`, `dal/redis/`,
`handlers/teacher/`, `bot/webapp/`). The check reads the source with `ast`; nothing is
imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("bot", "handlers", "ui", "services", "dal")
COMPOSITION_ROOT = frozenset({"bot.app", "bot.__main__"})

# Known, temporary exceptions: (importing package, imported module). None today; an entry
# must go once unused (test_every_allowed_exception_is_still_needed fails then).
ALLOWED: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported} ({self.rule})"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an `import` statement anywhere in `tree` names, relative ones resolved.
    `from package import name` counts as `package.name` (a submodule or a name in it: both
    are in the same package, which is all the contract looks at)."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def _allowed(
    layer: str, imported: str, allowed: frozenset[tuple[str, str]]
) -> tuple[str, str] | None:
    """The `allowed` entry covering `imported` (the module itself or a package holding it)."""
    parts = imported.split(".")
    for n in range(len(parts), 0, -1):
        if (layer, ".".join(parts[:n])) in allowed:
            return layer, ".".join(parts[:n])
    return None


def scanned(root: Path) -> list[tuple[str, Path]]:
    """(layer, file) of every module the contract checks: each layer's whole tree, its
    sub-packages at any depth included."""
    return [(layer, path) for layer in LAYERS for path in sorted((root / layer).rglob("*.py"))]


def violations(
    root: Path, allowed: frozenset[tuple[str, str]] = ALLOWED
) -> tuple[list[Violation], set[tuple[str, str]]]:
    """The contract's violations under `root`, and the allowed exceptions that were used."""
    found: list[Violation] = []
    used: set[tuple[str, str]] = set()
    for layer, path in scanned(root):
        module = module_name(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = str(path.relative_to(root))
        for line, imported in imported_modules(tree, module, path.name == "__init__.py"):
            target = imported.split(".")[0]
            if target not in LAYERS or target == layer:
                continue
            exception = _allowed(layer, imported, allowed)
            if exception is not None:
                used.add(exception)
                continue
            if LAYERS.index(target) < LAYERS.index(layer):
                rule = f"{layer} is below {target}"
            elif target == "handlers" and layer == "bot" and module not in COMPOSITION_ROOT:
                rule = "only the composition root (bot.app, bot.__main__) imports handlers"
            else:
                continue
            found.append(Violation(rel, line, module, imported, rule))
    return found, used


def test_imports_point_one_way() -> None:
    found, _ = violations(ROOT)
    assert not found, "\n".join(str(v) for v in found)


def test_every_sub_package_is_checked() -> None:
    # A package split into modules (services/attendance/: sessions, check-ins, review, code
    # rotation) stays under its layer's rules, module by module.
    checked = {module_name(ROOT, path) for _, path in scanned(ROOT)}
    sub_packages = {
        init.parent
        for layer in LAYERS
        for init in (ROOT / layer).rglob("__init__.py")
        if init.parent != ROOT / layer
    }
    assert ROOT / "services" / "attendance" in sub_packages
    for package in sub_packages:
        modules = {module_name(ROOT, path) for path in package.glob("*.py")}
        assert modules <= checked, f"not checked: {sorted(modules - checked)}"
    assert {
        "services.attendance",
        "services.attendance.sessions",
        "services.attendance.checkins",
        "services.attendance.review",
        "services.attendance.rotation",
    } <= checked


def test_every_allowed_exception_is_still_needed() -> None:
    _, used = violations(ROOT)
    assert used == set(ALLOWED), f"remove from ALLOWED: {sorted(set(ALLOWED) - used)}"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_check_flags_every_kind_of_violation(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            **{f"{layer}/__init__.py": "" for layer in LAYERS},
            # allowed: the composition root, downward imports, the package's own modules
            "bot/app.py": "from handlers import build_router\nimport dal.models\n",
            "bot/__main__.py": "import handlers.login\n",
            "handlers/login.py": "from ui.render import x\nfrom services import accounts\n"
            "from handlers.filters import y\nfrom . import filters\n",
            "ui/render.py": "from services.attendance import Roster\nfrom bot.i18n import t\n",
            # violations
            "ui/i18n.py": "from bot.config import Settings\n",
            "bot/status_message.py": "from handlers.render import session_status\n",
            "bot/fsm.py": "def f():\n    from handlers.filters import is_code\n",
            "handlers/common.py": "from bot.metrics import Metrics\n",
            "handlers/student.py": "from ..bot import answers\n",
            "ui/callbacks.py": "import handlers.teacher\n",
            "services/aksis.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from bot.config import Settings\n",
            "services/sub/deep.py": "from ...ui import render\n",
            # a split service: its parts import each other and the layers below, nothing above
            "services/attendance/__init__.py": "from .checkins import CheckInService\n"
            "from services.attendance.review import ReviewService\n",
            "services/attendance/checkins.py": "from dal.redis.checkins import CheckIns\n"
            "from bot.metrics import Metrics\n",
            "services/attendance/review.py": "from .sessions import SessionService\n"
            "from ...handlers.replies import Reply\n",
            "services/attendance/rotation.py": "def tick():\n    from ui.i18n import t\n",
            "dal/outbox.py": "import services.notify as n\n",
        },
    )
    # one exception allowed: ui may import bot.i18n (not the rest of bot)
    found, used = violations(tmp_path, frozenset({("ui", "bot.i18n")}))
    flagged = {(v.importer, v.imported) for v in found}
    assert flagged == {
        ("ui.i18n", "bot.config.Settings"),
        ("bot.status_message", "handlers.render.session_status"),
        ("bot.fsm", "handlers.filters.is_code"),
        ("handlers.common", "bot.metrics.Metrics"),
        ("handlers.student", "bot.answers"),
        ("ui.callbacks", "handlers.teacher"),
        ("services.aksis", "bot.config.Settings"),
        ("services.sub.deep", "ui.render"),
        ("services.attendance.checkins", "bot.metrics.Metrics"),
        ("services.attendance.review", "handlers.replies.Reply"),
        ("services.attendance.rotation", "ui.i18n.t"),
        ("dal.outbox", "services.notify"),
    }
    assert used == {("ui", "bot.i18n")}
    lines = {v.importer: v.line for v in found}
    assert lines["bot.fsm"] == 2
    assert lines["services.aksis"] == 3


@pytest.mark.parametrize(
    ("module", "is_package", "source", "expected"),
    [
        ("ui.render", False, "from . import callbacks", "ui.callbacks"),
        ("ui", True, "from .render import t", "ui.render.t"),
        ("services.sub.deep", False, "from ..text import is_code", "services.text.is_code"),
        (
            "services.attendance",
            True,
            "from .sessions import Started",
            "services.attendance.sessions.Started",
        ),
        ("services.attendance.review", False, "from ...bot import config", "bot.config"),
        ("bot.app", False, "import handlers.deps, dal", "handlers.deps"),
    ],
)
def test_relative_imports_resolve_to_their_package(
    module: str, is_package: bool, source: str, expected: str
) -> None:
    names = [name for _, name in imported_modules(ast.parse(source), module, is_package)]
    assert names[0] == expected
