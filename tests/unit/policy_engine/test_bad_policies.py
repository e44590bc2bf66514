"""At least 200 bad policy inputs, each rejected with file:line:col and nothing compiled."""

from __future__ import annotations

import pytest

from icetide.errors import PolicyError
from policies.compiler import compile_policy
from policies.loader import parse_policy
from policies.validate import check_policy
from tests.unit.policy_engine.bad_inputs import all_cases
from tests.unit.policy_engine.support import KEY_ENV, provider

pytestmark = pytest.mark.unit

CASES = all_cases()


def test_there_are_at_least_200_cases() -> None:
    assert len(CASES) >= 200
    assert len({text for _, text, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id, text, marker", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_with_position(case_id: str, text: str, marker: str | None) -> None:
    compiled = None
    with pytest.raises(PolicyError) as info:
        compiled = compile_policy(check_policy(parse_policy(text, "bad.yaml"), provider()), KEY_ENV)
    assert compiled is None  # nothing produced from a file with an error
    error = info.value
    assert error.file == "bad.yaml" and error.line >= 1 and error.col >= 1
    assert str(error).startswith(f"bad.yaml:{error.line}:{error.col}: ")
    lines = text.split("\n")
    assert error.line <= max(1, len(lines)) + 1
    if marker is not None:
        assert marker in lines[error.line - 1], (case_id, str(error))
