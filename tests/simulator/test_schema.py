"""The control port's validator on its own: bad requests refused by field, good ones filled in."""

from __future__ import annotations

import json

import pytest

from simulator import cli, schema
from simulator.pstn import RING_CADENCES
from tests.conftest import ROOT
from tests.simulator.control_corpus import CASES

CTX = schema.Context(channels=2)


def refusal(raw: bytes) -> schema.RequestError:
    with pytest.raises(schema.RequestError) as exc:
        req = schema.parse(raw)
        schema.request_id(req)
        schema.validate(req, CTX)
    return exc.value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_request_is_refused_naming_its_field(case):
    err = refusal(case.raw)
    assert err.field == case.field
    assert str(err).startswith(case.field + " ")


def test_the_refusal_says_what_is_allowed():
    assert "on_ms 100..3000 and off_ms 200..6000, not [0, 0]" in str(refusal(b'{"op": "ring", "cadence": [0, 0]}'))
    assert "from 1 to 2, not true" in str(refusal(b'{"op": "ring", "line": true}'))
    assert "from 0 to 0.01, not 2" in str(refusal(b'{"op": "fault", "ber": 2}'))
    assert "a 5000-digit number" in str(refusal(b'{"op": "ring", "line": ' + b"7" * 5000 + b"}"))
    assert "the fields are: line, ms, wait, timeout_ms" in str(refusal(b'{"op": "silence", "seconds": 1}'))
    long = str(refusal(json.dumps({"op": "speak", "text": "x" * 6000}).encode()))
    assert len(long) < 200  # a refusal quotes a little of a long value, not all of it


def test_good_requests_get_their_defaults_and_their_values():
    op, args = schema.validate({"op": "ring"}, CTX)
    assert (op, args) == ("ring", {"line": 1, "cid": None, "cadence": None, "max_rings": 0, "wait_answer": True,
                                   "timeout_ms": 30000.0})
    _, args = schema.validate({"op": "ring", "line": 2, "cadence": [400, 600], "cid": {"number": "13800138000"}}, CTX)
    assert args["cadence"] == (400, 600) and args["line"] == 2
    assert args["cid"] == {"number": "13800138000", "name": "", "datetime": "", "mode": "bell202"}
    assert schema.validate({"op": "ring", "cadence": "na"}, CTX)[1]["cadence"] == RING_CADENCES["na"]
    _, args = schema.validate({"op": "dtmf", "digits": "12#*abcd", "freq_offset": 0.015, "col_offset": -0.01}, CTX)
    assert (args["row_offset"], args["col_offset"]) == (0.015, -0.01) and "freq_offset" not in args
    _, args = schema.validate({"op": "listen", "ms": 800, "prompts": {"a": "/p/a.wav"}, "until": "a"}, CTX)
    assert args == {"line": 1, "ms": 800.0, "prompts": {"a": "/p/a.wav"}, "until": "a"}
    assert schema.validate({"op": "impair", "noise_dbm0": None}, CTX)[1] == {"line": 1, "noise_dbm0": None,
                                                                           "seed": 1234}
    assert schema.validate({"op": "silence", "ms": 250.0}, CTX)[1]["ms"] == 250  # a whole float is whole
    assert schema.request_id(schema.parse(b'{"op": "status", "id": "a-1"}')) == "a-1"
    assert schema.request_id({"op": "status"}) is schema.MISSING


def test_every_op_takes_its_defaults():
    for name, op in schema.OPS.items():
        given = {"digits": "1", "text": "hi", "on": True, "at": "reboot"}
        needed = {k: given.get(k, "/a.wav") for k, f in op.fields.items() if f.required}
        assert schema.validate({"op": name, **needed}, CTX)[0] == name


def test_nesting_skips_brackets_inside_strings():
    assert schema.nesting('{"a": "[[[[[[\\"[[[", "b": [1, {"c": "]]]]"}]}') == 3
    assert schema.nesting("[" * 100_000) == schema.MAX_DEPTH + 1  # it stops counting
    assert schema.nesting('"\\\\"[[') == 2  # an escaped backslash ends nothing


def test_the_docs_list_the_bounds_as_the_validator_has_them():
    doc = (ROOT / "docs" / "simulator.md").read_text()
    assert schema.bounds() in doc


# -- simctl's own arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["card", "--port", "70000"], "argument --port: must be a whole number from 0 to 65535"),
    (["card", "--speed", "0"], "argument --speed: must be a number from 0.1 to 100"),
    (["card", "--ber", "2"], "argument --ber: must be a number from 0 to 0.01"),
    (["card", "--baud", "fast"], "argument --baud: must be a whole number from 9600 to 12000000, not 'fast'"),
    (["call", "--line", "0"], "argument --line: must be a whole number from 1 to 8"),
    (["call", "--on-ms", "-80"], "argument --on-ms: must be a whole number from 10 to 10000 ms"),
    (["call", "--answer-timeout", "inf"], "argument --answer-timeout: must be a number from 0 to 3600 s"),
    (["call", "--digits", "12x"], "argument --digits: must be 1 to 1000 DTMF digits"),
    (["call", "--say", "x" * 6000], "argument --say: must be 1 to 5000 characters of text"),
    (["call", "--cid-number", "138-0013"], "argument --cid-number: must be up to 20 digits 0-9"),
    (["fault", "--drop", "2"], "argument --drop: must be a number from 0 to 0.5"),
    (["power", "half"], "argument state: invalid choice: 'half'"),
    (["cut", "flash_op", "--n", "-1"], "argument --n: must be a whole number from 0 to 2147483647, not -1"),
    (["cut", "sometime"], "argument at: invalid choice: 'sometime'"),
])
def test_simctl_refuses_a_bad_argument_by_name(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and says in err and "Traceback" not in err


@pytest.mark.parametrize("content, says", [
    (b"[{\"op\": \"ring\"},\n  {op: 1}]", ":2:4: not JSON"),
    (b'{"op": "ring"}', "a script is a JSON list of steps"),
    (b'[{"op": "ring"}, ["dtmf"]]', "step 2 must be an object with an \"op\""),
    (b'[{"digits": "1"}]', "step 1 must be an object with an \"op\""),
    (b"\xff\xfe[]", "cannot read the script"),
])
def test_simctl_call_refuses_a_bad_script_before_it_rings(content, says, tmp_path, capsys):
    script = tmp_path / "steps.json"
    script.write_bytes(content)
    # port 9 (discard) has nobody listening: the script is refused before any connection
    assert cli.main(["call", "--sim", "127.0.0.1:9", "--script", str(script)]) == 2
    err = capsys.readouterr().err
    assert str(script) in err and says in err and "Traceback" not in err
