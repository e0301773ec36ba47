"""The load callers' arithmetic: where a key ends on the call's timeline, and which prompt answers it."""

from __future__ import annotations

from simulator.load import KEY_MS, Response, _keys_end, _match


def test_where_keys_end():
    assert _keys_end(300, "3") == 300 + KEY_MS
    # 12 keys from 2940: the last tone starts 11 tone+gap pairs later and lasts one tone
    assert _keys_end(2940, "6222000001#") == 2940 + 10 * 2 * KEY_MS + KEY_MS


def test_each_key_is_answered_by_the_first_of_its_prompts_after_it():
    heard = [{"prompt": "pin.en", "at_ms": 900}, {"prompt": "main.en", "at_ms": 460},
             {"prompt": "pin.en", "at_ms": 4300}, {"prompt": "ok.en", "at_ms": 6500}]
    heard.sort(key=lambda p: p["at_ms"])
    rs = [Response("language", "main.en", 360), Response("account", "pin.en", 4260),
          Response("pin", "ok.en", 6300), Response("menu", "account.en", 1680)]
    _match(rs, heard)
    # the pin prompt heard at 900 ms came before the account's # and is not its answer
    assert [r.ms for r in rs] == [100, 40, 200, None]
