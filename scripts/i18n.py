"""Translation catalogs: extract, update, compile, check (Babel's API; see ui/i18n.py).

    python scripts/i18n.py extract   # the keys used in the code -> locales/messages.pot
    python scripts/i18n.py update    # merge the template into every locales/*/LC_MESSAGES/attn.po
    python scripts/i18n.py compile   # .po -> .mo (make install and the Docker build run this)
    python scripts/i18n.py check     # keys, unused entries and placeholders agree (make test)

The msgids are symbolic keys (monolingual catalogs), so extraction looks for keys, not English
text: the literal first argument of `t()`, `tn()`, `N_()`, `InvalidInput()` and `Button()`
(both branches of a conditional expression count), the literal of a `key=` or `label_key=`
argument, and, in the same packages, any other string literal that looks like a key
(`namespace.name`) in a namespace those calls or the English catalog use (`key = "checkin.ok"`,
dict values, `_tell(..., "error.generic")`), except a `name=` argument (a router's name such as
`Router(name="teacher.session")` is not a message). Keys formed at run time
(`t(f"role.{role}")`) are named with `N_()` in ui/i18n.py.
"""

from __future__ import annotations

import argparse
import ast
import re
import string
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "services", "ui")
DOMAIN = "attn"
SOURCE_LOCALE = "en"
WIDTH = 100

_CALLS = {"t": False, "N_": False, "InvalidInput": False, "Button": False, "tn": True}
_KEY_ARGUMENTS = frozenset({"key", "label_key"})
_NAME_ARGUMENTS = frozenset({"name"})  # names of things (routers), never message keys
_KEY_SYNTAX = re.compile(r"^[a-z][a-z_]*(\.[A-Za-z0-9_]+)+$")
# Babel keyword specs: a plural key is its own msgid_plural.
_KEYWORDS: Mapping[str, Any] = {"t": (1,), "tn": (1, 2)}


# --- extraction --------------------------------------------------------------------------


def _literals(node: ast.expr) -> list[ast.Constant]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, ast.IfExp):
        return _literals(node.body) + _literals(node.orelse)
    return []


def _callee(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def extract_keys(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Mapping[str, Any]
) -> Iterator[tuple[int, str, tuple[str, ...], list[str]]]:
    """A Babel extraction method (see the module docstring). `options["namespaces"]`, when
    given, admits the key-like literals of those namespaces besides the calls."""
    tree = ast.parse(fileobj.read())
    seen: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node)
        found: list[tuple[ast.Constant, bool]] = []
        if callee in _CALLS and node.args:
            found += [(c, _CALLS[callee]) for c in _literals(node.args[0])]
        for keyword in node.keywords:
            if keyword.arg in _KEY_ARGUMENTS:
                found += [(c, False) for c in _literals(keyword.value)]
            elif keyword.arg in _NAME_ARGUMENTS:
                seen.update(id(c) for c in _literals(keyword.value))
        for constant, plural in found:
            seen.add(id(constant))
            key = str(constant.value)
            yield constant.lineno, ("tn" if plural else "t"), (key, key) if plural else (key,), []
    namespaces = options.get("namespaces")
    if not namespaces:
        return
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in seen
            and _KEY_SYNTAX.match(node.value)
            and node.value.split(".", 1)[0] in namespaces
        ):
            yield node.lineno, "t", (node.value,), []


def used_keys(root: Path = ROOT) -> dict[str, tuple[bool, list[str]]]:
    """Every key the code uses: key -> (plural, where)."""

    def run(options: dict[str, Any]) -> dict[str, tuple[bool, list[str]]]:
        keys: dict[str, tuple[bool, list[str]]] = {}
        for package in PACKAGES:
            for filename, _lineno, message, _comments, _context in extract_from_dir(
                root / package,
                method_map=[("**.py", extract_keys)],
                options_map={"**.py": options},
                keywords=_KEYWORDS,
            ):
                plural = isinstance(message, tuple)
                key = message[0] if isinstance(message, tuple) else message
                plural_before, places = keys.get(key, (False, []))
                keys[key] = (plural or plural_before, [*places, f"{package}/{filename}"])
        return keys

    known = set(run({}))
    english = root / "locales" / SOURCE_LOCALE / "LC_MESSAGES" / f"{DOMAIN}.po"
    if english.exists():
        known |= {m.id if isinstance(m.id, str) else m.id[0] for m in read(english) if m.id}
    return run({"namespaces": {key.split(".", 1)[0] for key in known if "." in key}})


def template(root: Path = ROOT) -> Catalog:
    catalog = Catalog(domain=DOMAIN, project="ATTN", version="1", charset="utf-8", fuzzy=False)
    for key, (plural, places) in sorted(used_keys(root).items()):
        msgid: str | tuple[str, str] = (key, key) if plural else key
        catalog.add(msgid, None, locations=[(place, None) for place in sorted(set(places))])
    return catalog


# --- catalogs ----------------------------------------------------------------------------


def po_files(locales: Path) -> dict[str, Path]:
    return {p.parent.parent.name: p for p in sorted(locales.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))}


def read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=locale, domain=DOMAIN)


def write(path: Path, catalog: Catalog, **options: Any) -> None:
    with path.open("wb") as target:
        write_po(target, catalog, width=WIDTH, **options)


def forms(message: Message) -> tuple[str, ...]:
    value = message.string
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value or ""),)


def english_comment(message: Message) -> list[str]:
    texts = forms(message)
    if len(texts) == 1:
        return texts[0].split("\n")
    lines: list[str] = []
    for label, text in zip(("singular", "plural"), texts, strict=False):
        lines += [f"({label})", *text.split("\n")]
    return lines


def extract(locales: Path) -> int:
    catalog = template()
    write(locales / "messages.pot", catalog, include_lineno=False, sort_output=True)
    print(f"{len(catalog)} keys -> {locales / 'messages.pot'}")
    return 0


def update(locales: Path) -> int:
    pot = read(locales / "messages.pot")
    files = po_files(locales)
    english = None
    for locale in sorted(files, key=lambda name: name != SOURCE_LOCALE):  # English first
        catalog = read(files[locale], locale)
        catalog.update(pot, no_fuzzy_matching=True, update_creation_date=False)
        if locale == SOURCE_LOCALE:
            english = catalog
        elif english is not None:
            for message in catalog:
                source = english.get(message.id) if message.id else None
                message.auto_comments = english_comment(source) if source else []
        write(files[locale], catalog, no_location=True, ignore_obsolete=True)
        print(f"updated {files[locale]}")
    return 0


def compile_all(locales: Path) -> int:
    for locale, po in po_files(locales).items():
        catalog = read(po, locale)
        with po.with_suffix(".mo").open("wb") as target:
            write_mo(target, catalog)
        print(f"compiled {po.with_suffix('.mo')}")
    return 0


def placeholders(text: str) -> set[str]:
    """The `{name}` fields of a template (ValueError for a malformed one)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def problems(locales: Path, root: Path = ROOT) -> list[str]:
    found: list[str] = []
    files = po_files(locales)
    if SOURCE_LOCALE not in files:
        return [f"no {SOURCE_LOCALE} catalog under {locales}"]
    english = {m.id if isinstance(m.id, str) else m.id[0]: m for m in read(files["en"]) if m.id}
    used = used_keys(root)
    for key in sorted(set(used) - set(english)):
        found.append(f"{key}: used in {', '.join(sorted(set(used[key][1])))} but not in en")
    for key in sorted(set(english) - set(used)):
        found.append(f"{key}: in en but used nowhere in the code")
    fields: dict[str, set[str]] = {}
    for key, message in english.items():
        plural = isinstance(message.id, (list, tuple))
        if key in used and used[key][0] != plural:
            found.append(f"{key}: {'plural' if used[key][0] else 'singular'} in the code")
        if not all(forms(message)):
            found.append(f"{key}: no English text")
        try:
            fields[key] = set().union(*(placeholders(text) for text in forms(message)))
        except ValueError as exc:
            found.append(f"{key} (en): {exc}")
    for locale, po in files.items():
        if locale == SOURCE_LOCALE:
            continue
        for message in read(po, locale):
            key = message.id if isinstance(message.id, str) else message.id[0]
            if not key or key not in fields or not any(forms(message)):
                continue  # the header; an obsolete key; untranslated (English is shown)
            try:
                texts = [placeholders(text) for text in forms(message) if text]
            except ValueError as exc:
                found.append(f"{key} ({locale}): {exc}")
                continue
            if set().union(*texts) != fields[key] or any(not ts <= fields[key] for ts in texts):
                want, got = sorted(fields[key]), sorted(set().union(*texts))
                found.append(f"{key} ({locale}): placeholders {got}, English has {want}")
    return found


def check(locales: Path) -> int:
    found = problems(locales)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"{len(found)} problem(s)", file=sys.stderr)
        return 1
    print("catalogs agree with the code")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=("extract", "update", "compile", "check"))
    parser.add_argument("--locales", type=Path, default=ROOT / "locales")
    args = parser.parse_args(argv)
    command = {"extract": extract, "update": update, "compile": compile_all, "check": check}
    return command[args.command](args.locales)


if __name__ == "__main__":
    sys.exit(main())
