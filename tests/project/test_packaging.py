"""The package as a plain `pip install` of its wheel delivers it: the translation catalogs ride
along as package data, and the `attn` console script runs the operator's CLI."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the Dockerfile copies into its build stage: the project, its catalogs, the compiler.
SOURCES = ("pyproject.toml", "README.md", "bot", "handlers", "dal", "services", "ui", "locales")


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the tree (as the Dockerfile does): catalogs compiled
    first, then `pip wheel --no-deps` with this venv's setuptools, offline."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path,
                source / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.mo", "*.egg-info"),
            )
        else:
            shutil.copy2(path, source / name)
    (source / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "i18n.py", source / "scripts" / "i18n.py")
    _run(sys.executable, "scripts/i18n.py", "compile", cwd=source)
    out = tmp_path_factory.mktemp("wheel")
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "--wheel-dir",
        out,
        ".",
        cwd=source,
    )
    (built,) = out.glob("attn-*.whl")
    return built


def test_the_wheel_carries_every_catalog_compiled(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    locales = sorted(p.name for p in (ROOT / "locales").iterdir() if p.is_dir())
    assert locales == ["en", "tr"]
    for locale in locales:
        assert f"ui/locales/{locale}/LC_MESSAGES/attn.mo" in names
        assert f"ui/locales/{locale}/LC_MESSAGES/attn.po" in names
    entry_points = zipfile.ZipFile(wheel).read("attn-0.1.0.dist-info/entry_points.txt").decode()
    assert "attn = bot.__main__:main" in entry_points


def test_an_installed_wheel_runs_attn_and_answers_in_turkish(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with only the wheel installed (its dependencies are read from this test
    venv through a path file, so nothing is downloaded): `attn --version` runs, and the bot's
    catalogs load from the installed package, the compiled ones alone included."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "-q",
        wheel,
        cwd=tmp_path,
    )
    (purelib,) = (venv / "lib").glob("python3.*/site-packages")
    # The dependencies, appended after the venv's own site-packages (a path added by a .pth is
    # not a site directory: this venv's editable install of attn is not activated there).
    (purelib / "attn-test-dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n", encoding="utf-8"
    )
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    assert _run(venv / "bin" / "attn", "--version", cwd=tmp_path, env=env).strip() == "attn 0.1.0"

    installed = purelib / "ui" / "locales"
    for po in installed.glob("*/LC_MESSAGES/attn.po"):
        po.unlink()  # the compiled catalogs alone must do
    probe = textwrap.dedent(
        """
        import ui.i18n as i18n
        print(i18n.__file__)
        print(i18n.locales_dir())
        print(sorted(i18n.default_catalogs().locales))
        print(i18n.t("help.student", locale="tr").splitlines()[0])
        print(i18n.t("help.student", locale="en").splitlines()[0])
        """
    )
    lines = _run(python, "-c", probe, cwd=tmp_path, env=env).splitlines()
    assert lines[0].startswith(str(purelib)), lines
    assert lines[1] == str(installed)
    assert lines[2] == "['en', 'tr']"
    assert lines[3] == "<b>Öğrenciler için ATTN</b>"
    assert lines[4].startswith("<b>") and "ATTN" in lines[4] and lines[4] != lines[3]
