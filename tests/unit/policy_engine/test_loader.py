"""Loading policy files: the example, positions of nodes, the published JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from icetide.errors import PolicyError
from policies.loader import parse_policy
from tests.unit.policy_engine.support import EXAMPLE, ROOT

pytestmark = pytest.mark.unit


def test_example_loads_with_positions() -> None:
    policy = parse_policy(EXAMPLE.read_text(), "vendas.yaml")
    assert set(policy.users) == {"ana", "bruno", "carla", "erin", "dave"}
    table = policy.tables["sales.vendas"]
    rule = table.row_rules[0]
    lines = EXAMPLE.read_text().splitlines()
    assert lines[rule.pos.line - 1][rule.pos.col - 1:].startswith("id: rf-analyst-region")
    assert rule.filter is not None
    assert lines[rule.filter.pos.line - 1][rule.filter.pos.col - 1:].startswith('"region')
    assert len(policy.content_hash) == 64


def test_content_hash_ignores_formatting_but_not_meaning() -> None:
    text = EXAMPLE.read_text()
    a = parse_policy(text, "a.yaml").content_hash
    b = parse_policy("# comment\n" + text.replace("[public]", "[ public ]"), "b.yaml").content_hash
    c = parse_policy(text.replace("bucket: 100", "bucket: 10"), "c.yaml").content_hash
    assert a == b != c


def test_example_conforms_to_published_schema() -> None:
    schema = json.loads((ROOT / "policies" / "schema" / "policy.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(EXAMPLE.read_text()), schema)


@pytest.mark.parametrize("text, line, col", [
    ("policy: p\nversion: 1\nprincipals: {users: {}}\ntables: {}\nextra: 1\n", 5, 1),
    ("policy: p\nversion: x\nprincipals: {users: {}}\ntables: {}\n", 2, 10),
    ("policy: p\nversion: 1\nprincipals: {users: {A: {}}}\ntables: {}\n", 3, 22),
    ("policy: p\nversion: 1\nprincipals: {users: {}}\ntables: {}\ntables: {}\n", 5, 1),
])
def test_structural_errors_point_at_the_node(text: str, line: int, col: int) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    assert (info.value.file, info.value.line, info.value.col) == ("p.yaml", line, col)
    assert str(info.value).startswith(f"p.yaml:{line}:{col}: ")


def test_published_schema_knows_exactly_the_loader_keys() -> None:
    from policies.loader import KEYS

    schema = json.loads((ROOT / "policies" / "schema" / "policy.schema.json").read_text())
    defs = schema["$defs"]
    user = defs["principals"]["properties"]["users"]["additionalProperties"]["oneOf"][1]
    mask = defs["mask"]["oneOf"][2]
    found = {
        "policy": schema["properties"], "principals": defs["principals"]["properties"], "user": user["properties"],
        "key": defs["key"]["properties"], "tag": defs["tag"]["properties"], "table": defs["table"]["properties"],
        "row_filter": defs["row_filter"]["properties"], "mask_rule": defs["mask_rule"]["properties"],
        "mask": mask["properties"], "to": defs["to"]["oneOf"][1]["properties"],
    }
    assert {k: set(v) for k, v in found.items()} == KEYS
