"""docs/central-link.md says what central_link/protocol.py defines: the message table (type,
sender, fields in order, the answer), the error codes and the outbox kinds, both ways; and every
refusal reason it lists is one the hub's code can log."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from central_link import protocol
from tests.docs.markdown import DOCS, code, table

DOC = (DOCS / "central-link.md").read_text(encoding="utf-8")
SOURCE = "\n".join(p.read_text(encoding="utf-8") for p in Path(protocol.__file__).parent.rglob("*.py"))


def test_the_message_table_is_the_schema():
    rows = table(DOC, "Messages", "type")
    doc = {code(r["type"]): r for r in rows}
    assert set(doc) == set(protocol.MESSAGES)
    for name, cls in protocol.MESSAGES.items():
        r = doc[name]
        assert r["sent by"] == cls.SENDER, name
        assert re.findall(r"`([a-z_]+)`", r["fields"]) == [f.name for f in fields(cls)], name
        answers = tuple(re.findall(r"`([a-z_]+)`", r["answered by"]))
        assert answers == cls.ANSWER and (cls.ANSWER or r["answered by"] == "—"), name


def test_the_error_codes_are_the_schemas():
    assert [code(r["code"]) for r in table(DOC, "Errors", "code")] == list(protocol.ERROR_CODES)


def test_the_value_lists_are_the_schemas():
    for heading, first, values in (("Why HQ refuses to queue a call", "reason", protocol.REFUSALS),
                                   ("A capture's states", "state", protocol.CAPTURE_STATES)):
        assert tuple(code(r[first]) for r in table(DOC, heading, first)) == values


def test_the_outbox_kinds_are_the_schemas():
    assert [code(r["kind"]) for r in table(DOC, "Outbox kinds", "kind")] == list(protocol.OUTBOX_KINDS)


def test_each_refusal_reason_is_one_the_hub_logs():
    rows = table(DOC, "Who is refused", "refused")
    assert len(rows) == 6
    for r in rows:
        reason = code(r["logged reason"])
        parts = [w.strip() for w in re.split(r"\(…\)|…|'ID'|ADDR", reason) if len(w.strip()) > 4]
        assert parts, reason  # the words around what varies (an id, an address, OpenSSL's words)
        for words in parts:
            assert words in SOURCE, f"{reason}: {words!r} is in no log line of central_link"
