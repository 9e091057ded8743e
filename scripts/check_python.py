# -*- coding: utf-8 -*-
"""Can this interpreter build the project's venv? One line naming what to install when not.

    $(PYTHON) scripts/check_python.py VENV   # run by make; creates VENV (with pip) when it can

Written for any Python (2.7 included: a machine's `python` may be one), so that an interpreter
too old for the project, or a Debian/Ubuntu Python without its python3.X-venv package (no
ensurepip, so no pip in a new venv), ends `make` with one line instead of a traceback from pip
or venv. The oldest supported version is read from pyproject.toml's requires-python.
"""

from __future__ import print_function

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fail(message):
    print("make: " + message, file=sys.stderr)
    sys.exit(1)


def _oldest_supported():
    with open(os.path.join(ROOT, "pyproject.toml")) as handle:
        found = re.search(r'^requires-python\s*=\s*">=\s*(\d+)\.(\d+)', handle.read(), re.M)
    if found is None:
        _fail('pyproject.toml has no requires-python of the form ">=X.Y"')
    return int(found.group(1)), int(found.group(2))


def _venv_package():
    return "python%d.%d-venv" % sys.version_info[:2]


def main(argv):
    here = "%d.%d.%d" % sys.version_info[:3]
    oldest = _oldest_supported()
    if sys.version_info[:2] < oldest:
        _fail(
            "%s is Python %s; ATTN needs Python %d.%d or newer: install one and run make"
            " PYTHON=python3.X (e.g. PYTHON=python3.13)"
            % (sys.executable, here, oldest[0], oldest[1])
        )
    missing = []
    for module in ("venv", "ensurepip"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        _fail(
            "%s (Python %s) has no %s, so it cannot create a virtual environment with pip:"
            " install %s (Debian/Ubuntu: apt install %s)"
            % (sys.executable, here, " or ".join(missing), _venv_package(), _venv_package())
        )
    if len(argv) > 1:
        venv_dir = argv[1]
        # A child process: venv and ensurepip print their own errors, a line is enough here.
        result = subprocess.Popen(
            [sys.executable, "-m", "venv", "--clear", venv_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output = result.communicate()[0].decode("utf-8", "replace")
        pip = os.path.join(venv_dir, "bin", "pip")
        if result.returncode != 0 or not os.path.exists(pip):
            last = [line.strip() for line in output.splitlines() if line.strip()][-1:]
            _fail(
                "%s -m venv could not create %s with pip (%s): install %s (Debian/Ubuntu:"
                " apt install %s)"
                % (
                    sys.executable,
                    venv_dir,
                    last[0] if last else "exit %d" % result.returncode,
                    _venv_package(),
                    _venv_package(),
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
