"""Reading input_output as TACO does."""

from __future__ import annotations

from harness.data.testcases import Mode, parse_input_output


def test_int_keys_restored():
    suite = parse_input_output('{"fn_name": "f", "inputs": [[{"1": 2}]], "outputs": [{"3": 4}]}')
    assert suite.mode is Mode.CALL
    assert suite.cases[0].input == [{1: 2}] and suite.cases[0].output == [{3: 4}]
