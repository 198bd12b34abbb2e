"""Stand-in for kbit's loader in the build-stage tests: finds libraries like kbit does."""

from __future__ import annotations

import ctypes
import json
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path


def _folders() -> list[tuple[str, Path]]:
    found = [("kbit", Path(__file__).parent / "_lib")]
    for ep in sorted(entry_points(group="kbit.libraries"), key=lambda e: e.name):
        module = import_module(ep.value)
        found.append((f"{ep.value} ({ep.dist.name if ep.dist else '?'})", Path(module.__file__).parent / "_lib"))
    return found


def libraries() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for source, folder in _folders():
        for manifest in sorted(folder.glob("libkbit_*.json")):
            info = json.loads(manifest.read_text())
            lib = folder / info["library"]
            handle = ctypes.CDLL(str(lib))
            handle.kbit_backend.restype = ctypes.c_char_p
            info["source"] = source
            info["loaded_backend"] = handle.kbit_backend().decode()
            info["loaded_cuda"] = handle.kbit_cuda_version()
            out.append(info)
    return out
