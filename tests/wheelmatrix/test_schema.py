"""The committed schemas: no drift from the model, and real documents validate against them."""

from __future__ import annotations

import json
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import jsonschema
import pytest

from wheelmatrix import config, schema
from wheelmatrix.plan import github_matrix, make_plan, plan_document
from wm_support import MATRICES, REPO, linux_host


def test_matrix_schema_has_not_drifted() -> None:
    committed = schema.committed("matrix")
    generated = schema.matrix_schema()
    assert committed == generated, (
        "packaging/wheelmatrix/schemas/matrix.schema.json is stale: "
        "run `wheelmatrix schema matrix > packaging/wheelmatrix/schemas/matrix.schema.json`"
    )


@pytest.mark.parametrize("name", schema.SCHEMAS)
def test_schemas_are_valid_json_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schema.committed(name))


@pytest.mark.parametrize("path", [REPO / "matrix.toml", MATRICES / "good" / "minimal.toml"])
def test_valid_matrices_validate(path: object) -> None:
    doc = tomllib.loads(REPO.joinpath(str(path)).read_text())
    jsonschema.validate(doc, schema.matrix_schema())


@pytest.mark.parametrize("case", ["unknown_top_key", "unknown_nested_key", "sass_is_string", "split_strategy_misspelt"])
def test_schema_rejects_what_the_loader_rejects(case: str) -> None:
    doc = tomllib.loads((MATRICES / "bad" / f"{case}.toml").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema.matrix_schema())


def test_plan_outputs_validate() -> None:
    plan = make_plan(config.load_matrix(REPO / "matrix.toml"), linux_host())
    doc = plan_document(plan)
    jsonschema.validate(doc, schema.committed("plan"))
    assert json.loads(json.dumps(doc)) == doc
    jsonschema.validate(github_matrix(plan), schema.committed("github-matrix"))


def test_schema_verb_prints_the_committed_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    from wheelmatrix.cli import main

    for name in schema.SCHEMAS:
        assert main(["schema", name]) == 0
        assert json.loads(capsys.readouterr().out) == schema.committed(name)
    from wheelmatrix.stages.record import SCHEMA

    assert main(["schema", "build-record"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == SCHEMA
    jsonschema.Draft202012Validator.check_schema(printed)
    assert sys.version_info >= (3, 10)
