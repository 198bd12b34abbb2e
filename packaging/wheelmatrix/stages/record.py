"""The build record: a versioned, machine-readable account of a build, written to ``dist/``.

``dist/build-record.json`` holds the cells (result, timings, cache key, toolchain, wheel hash),
the cells that need another host, the final wheels (size, % of the limit, tag, auditwheel's
rating, vendored libraries, each library's backend/CUDA/archs, sha256) and where the wall time
went. :data:`SCHEMA` is its JSON schema (``record_schema()``); :data:`RECORD_VERSION` changes
with any incompatible change.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as platform_mod
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wheelmatrix import __version__
from wheelmatrix.model import Matrix
from wheelmatrix.stages.assemble import FinalWheel
from wheelmatrix.stages.cells import CellResult
from wheelmatrix.wheelfile import source_date_epoch

RECORD_FILE = "build-record.json"
RECORD_VERSION = 1

_CELL = {
    "type": "object",
    "required": ["cell_id", "platform", "variant", "status", "reason", "duration"],
    "properties": {
        "cell_id": {"type": "string"},
        "platform": {"type": "string"},
        "variant": {"type": "string", "pattern": "^(cpu|cuda[0-9]+)$"},
        "status": {"enum": ["built", "cached", "failed", "skipped"]},
        "reason": {"type": "string"},
        "duration": {"type": "number", "minimum": 0},
        "build_seconds": {"type": "number", "minimum": 0},
        "toolchain_seconds": {"type": "number", "minimum": 0},
        "wheel": {"type": ["string", "null"]},
        "wheel_size": {"type": ["integer", "null"], "minimum": 0},
        "wheel_sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
        "log": {"type": ["string", "null"]},
        "cache_key": {"type": ["string", "null"]},
        "tail": {"type": "string"},
        "settings": {"type": "array", "items": {"type": "string"}},
        "toolchain": {"type": ["string", "null"]},
        "build_tree": {"enum": ["reused", "clean", None]},
        "compiler_cache": {
            "type": ["object", "null"],
            "required": ["enabled", "reason", "hits", "misses", "hit_rate"],
            "properties": {
                "enabled": {"type": "boolean"},
                "reason": {"type": "string"},
                "hits": {"type": "integer", "minimum": 0},
                "misses": {"type": "integer", "minimum": 0},
                "uncacheable": {"type": "integer", "minimum": 0},
                "hit_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            },
        },
        "schedule": {
            "type": ["object", "null"],
            "required": ["jobs", "threads"],
            "properties": {
                "cells": {"type": "integer", "minimum": 1},
                "jobs": {"type": "integer", "minimum": 1},
                "threads": {"type": "integer", "minimum": 1},
                "cores": {"type": "integer", "minimum": 1},
                "memory": {"type": "integer", "minimum": 0},
                "per_compile": {"type": "integer", "minimum": 1},
                "reason": {"type": "string"},
            },
        },
    },
}
_LIBRARY = {
    "type": "object",
    "required": ["file", "backend"],
    "properties": {
        "file": {"type": "string"},
        "backend": {"enum": ["cpu", "cuda"]},
        "cuda": {"type": ["string", "null"]},
        "sass": {"type": "array", "items": {"type": "integer"}},
        "ptx": {"type": "array", "items": {"type": "integer"}},
        "runtime": {"type": ["string", "null"]},
    },
}
_WHEEL = {
    "type": "object",
    "required": [
        "file",
        "distribution",
        "platform",
        "layout",
        "size",
        "limit",
        "percent_of_limit",
        "tag",
        "sha256",
        "libraries",
    ],
    "properties": {
        "file": {"type": "string"},
        "distribution": {"type": "string"},
        "platform": {"type": "string"},
        "layout": {"enum": ["fat", "split", "standalone", "core-plugin"]},
        "reason": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 0},
        "percent_of_limit": {"type": "number", "minimum": 0, "maximum": 100},
        "tag": {"type": "string"},
        "rated": {"type": ["string", "null"]},
        "repair": {"enum": ["auditwheel", "delvewheel", "delocate", "none"]},
        "vendored": {"type": "array", "items": {"type": "string"}},
        "excluded": {"type": "array", "items": {"type": "string"}},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "cells": {"type": "array", "items": {"type": "string"}},
        "libraries": {"type": "array", "items": _LIBRARY},
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://wheelmatrix.invalid/schemas/build-record-1.json",
    "title": "wheelmatrix build record",
    "type": "object",
    "required": ["kind", "version", "wheelmatrix", "project", "cells", "wheels", "needs_other_host", "timings"],
    "properties": {
        "kind": {"const": "wheelmatrix-build-record"},
        "version": {"const": RECORD_VERSION},
        "wheelmatrix": {"type": "string"},
        "project": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "matrix": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "sha256": {"type": "string"}},
        },
        "host": {"type": "object"},
        "source_date_epoch": {"type": "integer"},
        "assemble_key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "cells": {"type": "array", "items": _CELL},
        "needs_other_host": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["cell", "reason"],
                "properties": {"cell": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "wheels": {"type": "array", "items": _WHEEL},
        "timings": {
            "type": "object",
            "required": ["cells_wall_seconds", "assemble_seconds"],
            "properties": {
                "cells_wall_seconds": {"type": "number", "minimum": 0},
                "cells_build_seconds": {"type": "number", "minimum": 0},
                "cells_toolchain_seconds": {"type": "number", "minimum": 0},
                "assemble_seconds": {"type": "number", "minimum": 0},
            },
        },
    },
}


def record_schema() -> dict[str, Any]:
    return SCHEMA


def _library(file: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "file": str(manifest.get("library") or file),
        "backend": "cuda" if manifest.get("backend") == "cuda" else "cpu",
        "cuda": manifest.get("cuda") or None,
        "sass": [int(a) for a in manifest.get("sass") or []],
        "ptx": [int(a) for a in manifest.get("ptx") or []],
        "runtime": manifest.get("runtime") if manifest.get("backend") == "cuda" else None,
    }


def wheel_entry(final: FinalWheel) -> dict[str, Any]:
    by_file = {str(m.get("library")): m for m in final.manifests}
    return {
        "file": final.path.name,
        "distribution": final.distribution,
        "platform": final.platform,
        "layout": final.layout,
        "reason": final.reason,
        "size": final.size,
        "limit": final.limit,
        "percent_of_limit": round(final.percent, 3),
        "tag": final.tag,
        "rated": final.rated,
        "repair": final.repair_tool,
        "vendored": list(final.vendored),
        "excluded": list(final.excluded),
        "sha256": final.sha256,
        "cells": list(final.cells),
        "libraries": [_library(f, by_file.get(f, {})) for f in final.libraries],
    }


def make_record(
    matrix: Matrix,
    cells: Sequence[CellResult],
    wheels: Sequence[FinalWheel],
    *,
    version: str,
    needs_other_host: Sequence[tuple[str, str]],
    cells_wall_seconds: float,
    assemble_seconds: float,
) -> dict[str, Any]:
    matrix_bytes = matrix.path.read_bytes() if matrix.path.is_file() else b""
    return {
        "kind": "wheelmatrix-build-record",
        "version": RECORD_VERSION,
        "wheelmatrix": __version__,
        "project": {"name": matrix.project.name, "version": version},
        "matrix": {"path": str(matrix.path), "sha256": hashlib.sha256(matrix_bytes).hexdigest()},
        "host": {
            "platform": f"{platform_mod.system()}-{platform_mod.machine()}",
            "libc": " ".join(platform_mod.libc_ver()),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        },
        "source_date_epoch": source_date_epoch(),
        "cells": [c.to_json() for c in cells],
        "needs_other_host": [{"cell": c, "reason": r} for c, r in needs_other_host],
        "wheels": [wheel_entry(w) for w in wheels],
        "timings": {
            "cells_wall_seconds": round(cells_wall_seconds, 3),
            "cells_build_seconds": round(sum(c.build_seconds for c in cells), 3),
            "cells_toolchain_seconds": round(sum(c.toolchain_seconds for c in cells), 3),
            "assemble_seconds": round(assemble_seconds, 3),
        },
    }


def write_record(dist: Path, record: Mapping[str, Any]) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    path = dist / RECORD_FILE
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
