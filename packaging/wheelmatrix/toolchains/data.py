"""Access to ``data/toolchains.toml`` (read on first use, never at import)."""

from __future__ import annotations

import functools
import sys
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@functools.cache
def table() -> dict[str, Any]:
    text = resources.files("wheelmatrix").joinpath("data/toolchains.toml").read_text()
    data: dict[str, Any] = tomllib.loads(text)
    return data
