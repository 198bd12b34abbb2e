"""JSON Schemas: generated for ``matrix.toml`` from :mod:`wheelmatrix.settings`, committed, and
checked for drift by a test; the output schemas (plan, GitHub matrix) are committed data files.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from importlib import resources
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from wheelmatrix import settings
from wheelmatrix.settings import Size

SCHEMAS = ("matrix", "plan", "github-matrix")


def _field_schema(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _field_schema(args[0])
    if dataclasses.is_dataclass(tp):
        return {"$ref": f"#/$defs/{typing.cast('type', tp).__name__}"}
    if tp is Size:
        return {
            "oneOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$"},
            ]
        }
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (tuple, list):
        return {"type": "array", "items": _field_schema(get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _field_schema(get_args(tp)[1])}
    return {"type": {str: "string", int: "integer", bool: "boolean"}[tp]}


def _table_schema(cls: type[Any], defs: dict[str, Any]) -> None:
    if cls.__name__ in defs:
        return
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    defs[cls.__name__] = {}  # reserve (recursion guard)
    for f in dataclasses.fields(cls):
        key = f.name.replace("_", "-")
        tp = hints[f.name]
        schema = _field_schema(tp)
        for arg in (tp, *get_args(tp), *(a for x in get_args(tp) for a in get_args(x))):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                _table_schema(arg, defs)
        meta = dict(f.metadata)
        if "doc" in meta:
            schema = {"description": meta["doc"], **schema}
        if "enum" in meta:
            schema["items"] = {"enum": meta["enum"]}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(key)
        props[key] = schema
    entry: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if cls.__doc__ and cls is not settings.MatrixFile:
        entry["description"] = " ".join(cls.__doc__.split())
    if required:
        entry["required"] = required
    defs[cls.__name__] = entry


def matrix_schema() -> dict[str, Any]:
    """The JSON Schema of ``matrix.toml``, generated from the settings dataclasses."""
    defs: dict[str, Any] = {}
    _table_schema(settings.MatrixFile, defs)
    top = defs.pop("MatrixFile")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "wheelmatrix-matrix-1.json",
        "title": "wheelmatrix matrix.toml",
        **top,
        "$defs": dict(sorted(defs.items())),
    }


def committed(name: str) -> dict[str, Any]:
    text = resources.files("wheelmatrix").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"
