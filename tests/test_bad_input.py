"""Bad input at every public entry point gets a clear error (tests/bad_inputs.py),
and the Reliability page's table is exactly what these rows produce."""

import functools
import re

import pytest
from bad_inputs import ACCEPTED, CASES, PAGE, generated_section, run, table


@functools.cache
def _outcome(index: int):
    return run(CASES[index])


@pytest.mark.parametrize("index", range(len(CASES)), ids=lambda i: f"{i}-{CASES[i].entry}")
def test_bad_input_gets_a_clear_error(index):
    case, outcome = CASES[index], _outcome(index)
    if case.expected == ACCEPTED:
        assert outcome.error is None, f"{case.entry} refused {case.bad_input}: {outcome.error!r}"
        return
    assert isinstance(outcome.error, case.expected), (
        f"{case.entry} with {case.bad_input}: expected {case.expected}, got {outcome.error!r}"
    )
    assert case.match, "a refusal row must say what the message names"
    assert re.search(case.match, outcome.message), outcome.message
    # One readable line, not a traceback: the message is the library's own.
    assert "Traceback" not in outcome.message and len(outcome.message) < 400


def test_reliability_page_is_generated_from_the_rows():
    expected = table([_outcome(i) for i in range(len(CASES))])
    assert generated_section(PAGE.read_text()) == expected, (
        "docs/reliability.md is stale: run `python tests/bad_inputs.py`."
    )
