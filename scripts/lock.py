#!/usr/bin/env python3
"""The locked installs: requirements/runtime.txt (the image) and requirements/dev.txt (`make`).

    lock.py           # resolve pyproject.toml again (uv, PyPI) and rewrite both files: `make lock`
    lock.py --check   # offline: are both files current with pyproject.toml? (`make lint`)

One universal resolution (`uv pip compile --universal`) serves every supported Python (3.11 to
3.13) on every platform, each pin with the sha256 of every file PyPI has for it, installed with
`pip install --require-hashes`. Both hold the build backend: the project itself is installed
with `pip install --no-deps --no-build-isolation`, built by the locked setuptools (the image
removes it afterwards). dev.txt is resolved under runtime.txt as a constraint, so the image and
the tests run the same versions; it adds the test, servers and lock extras.

uv keeps the pins a file already has while they still satisfy pyproject.toml: re-locking after
a small edit moves only what the edit asks for. `make lock UPGRADE=1` (`--upgrade`) moves every
pin to the newest release that fits.

Each file records a digest of what it was resolved from (pyproject.toml's requires-python,
dependencies, extras and build requirements); `--check` compares it, and checks that every pin
of a direct dependency satisfies pyproject.toml, so editing one without the other fails `make
lint` with one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
RUNTIME = ROOT / "requirements" / "runtime.txt"
DEV = ROOT / "requirements" / "dev.txt"
# The oldest supported Python: the resolution must hold from there on (requires-python).
RESOLVE_FOR = "3.11"
EXTRAS = ("test", "servers", "lock")
DIGEST_LINE = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.MULTILINE)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


class LockError(Exception):
    """Reported as one line."""


def _pyproject(path: Path = PYPROJECT) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def inputs_digest(pyproject: dict[str, Any]) -> str:
    """sha256 of everything in pyproject.toml that the resolution depends on."""
    project = pyproject.get("project", {})
    inputs = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-system": pyproject.get("build-system", {}).get("requires", []),
        "resolve-for": RESOLVE_FOR,
    }
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def pins(text: str) -> dict[str, tuple[str, str | None]]:
    """{normalised name: (version, marker or None)} of a requirements file uv wrote."""
    found: dict[str, tuple[str, str | None]] = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            name, version, marker = match.groups()
            found[_normalise(name)] = (version, marker.strip() if marker else None)
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _header(digest: str, uv_version: str, what: str) -> str:
    return (
        f"# {what}\n"
        f"# Written by `make lock` (scripts/lock.py, {uv_version}); do not edit by hand.\n"
        f"# inputs-sha256: {digest}\n"
    )


def problems(
    pyproject_path: Path = PYPROJECT, locks: tuple[Path, ...] = (RUNTIME, DEV)
) -> list[str]:
    """Why the lock files are not current with pyproject.toml (empty when they are)."""
    from packaging.requirements import Requirement  # a test dependency (pytest's), as is --check

    pyproject = _pyproject(pyproject_path)
    digest = inputs_digest(pyproject)
    project = pyproject.get("project", {})
    runtime_reqs = list(project.get("dependencies", []))
    runtime_reqs += pyproject.get("build-system", {}).get("requires", [])
    dev_reqs = list(runtime_reqs)
    for extra in EXTRAS:
        dev_reqs += project.get("optional-dependencies", {}).get(extra, [])
    found: list[str] = []
    for lock, wanted in zip(locks, (runtime_reqs, dev_reqs), strict=True):
        try:
            text = lock.read_text()
        except OSError as exc:
            found.append(f"{lock.name} cannot be read ({exc.strerror or exc})")
            continue
        recorded = DIGEST_LINE.search(text)
        if recorded is None or recorded.group(1) != digest:
            found.append(f"{lock.name} was not resolved from this pyproject.toml")
        pinned = pins(text)
        for raw in wanted:
            requirement = Requirement(raw)
            name = _normalise(requirement.name)
            if name not in pinned:
                found.append(f"{lock.name} has no pin for {requirement.name}")
            elif not requirement.specifier.contains(pinned[name][0], prereleases=True):
                found.append(
                    f"{lock.name} pins {requirement.name}=={pinned[name][0]}, outside {raw!r}"
                )
    return found


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise LockError("uv is not installed: `make install` puts it in the venv (extra `lock`)")
    return uv


def _compile(uv: str, output: Path, extra_args: list[str], inputs: list[str]) -> None:
    """uv pip compile into `output`, keeping the pins it already has (uv reads it first)."""
    body = output.with_name(output.name + ".body")
    if output.exists():
        shutil.copyfile(output, body)
    argv = [
        uv,
        "pip",
        "compile",
        *inputs,
        "--universal",
        "--python-version",
        RESOLVE_FOR,
        "--generate-hashes",
        "--no-header",
        "--quiet",
        "--output-file",
        str(body),
        *extra_args,
    ]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        body.unlink(missing_ok=True)
        message = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        raise LockError(f"uv pip compile failed: {message}")


def lock(*, upgrade: bool = False) -> None:
    uv = _uv()
    uv_version = (
        subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
        .stdout.split("(")[0]
        .strip()
    )
    pyproject = _pyproject()
    digest = inputs_digest(pyproject)
    build = pyproject.get("build-system", {}).get("requires", [])
    upgrading = ["--upgrade"] if upgrade else []
    RUNTIME.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        build_in = Path(scratch) / "build.in"
        build_in.write_text("".join(f"{req}\n" for req in build))
        _compile(uv, RUNTIME, upgrading, ["pyproject.toml", str(build_in)])
        extras = [arg for extra in EXTRAS for arg in ("--extra", extra)]
        runtime_body = RUNTIME.with_name(RUNTIME.name + ".body")
        _compile(
            uv,
            DEV,
            [*upgrading, *extras, "--constraints", str(runtime_body)],
            ["pyproject.toml", str(build_in)],
        )
    for output, what in (
        (RUNTIME, "The image's install: pyproject.toml's dependencies + the build backend."),
        (DEV, "`make`'s install: runtime.txt + extras test, servers, lock + the build backend."),
    ):
        body = output.with_name(output.name + ".body")
        # uv names its inputs in `# via` comments: the scratch files by what they stand for.
        text = body.read_text().replace(str(build_in), "build-system.requires")
        text = text.replace(runtime_body.name, RUNTIME.name)
        output.write_text(_header(digest, uv_version, what) + text)
    for output in (RUNTIME, DEV):
        output.with_name(output.name + ".body").unlink()
    print(f"lock: wrote {RUNTIME.relative_to(ROOT)} and {DEV.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="offline: are the files current?")
    parser.add_argument("--upgrade", action="store_true", help="newest releases that fit")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.check:
            found = problems(args.pyproject)
            if found:
                print(f"lock: {'; '.join(found)}: run `make lock`", file=sys.stderr)
                return 1
            return 0
        lock(upgrade=args.upgrade)
    except LockError as exc:
        print(f"lock: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
