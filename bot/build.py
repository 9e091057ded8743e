"""What this build is: the installed distribution's version, for `--version`, the logs'
`service.version` and the `attn_build_info` series."""

from __future__ import annotations

from importlib import metadata
from typing import Final

DISTRIBUTION: Final = "attn"


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION: Final = _version()
