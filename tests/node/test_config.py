"""The node's TOML configuration: a good one loads; every kind of mistake is named precisely."""

from __future__ import annotations

import pytest

from node_agent.config import ConfigError, load

GOOD = """
[node]
id = "sz-futian-01"
card = "socket://127.0.0.1:7000"
language = "cmn"

[lines.1]
number = "0755-8888-0001"
flow = "main"

[prompts.choose]
cmn = "普通话请按一"
en = "For English press three"
[prompts.menu]
cmn = "查询请按一，人工服务请按零"
en = "For balances press one, for an agent press zero"
[prompts.bye]
cmn = "再见"
en = "Goodbye"

[flows.main]
start = "language"

[flows.main.nodes.language]
type = "language"
prompt = "choose"
options = { "1" = "cmn", "3" = "en" }
next = "menu"
on_fail = "bye"

[flows.main.nodes.menu]
type = "menu"
prompt = "menu"
options = { "1" = "bye", "0" = "agent" }
on_fail = "bye"

[flows.main.nodes.agent]
type = "transfer"
fallback = "bye"

[flows.main.nodes.bye]
type = "hangup"
prompt = "bye"
"""


def write(tmp_path, text):
    p = tmp_path / "branch.toml"
    p.write_text(text, encoding="utf-8")
    return p


def problems(tmp_path, text) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(write(tmp_path, text))
    assert str(tmp_path / "branch.toml") in str(exc.value)  # the error names the file
    return exc.value.problems


def test_good_config_loads(tmp_path):
    cfg = load(write(tmp_path, GOOD))
    assert cfg.node_id == "sz-futian-01" and cfg.lines[1].flow == "main"
    flow = cfg.flows["main"]
    assert flow.start == "language" and flow.nodes["menu"]["options"]["0"] == "agent"
    assert cfg.prompts["bye"].texts["en"] == "Goodbye"


def test_dangling_key(tmp_path):
    out = problems(tmp_path, GOOD.replace('"0" = "agent"', '"0" = "agnet"'))
    assert out == ["[flows.main.nodes.menu] option '0' goes to 'agnet', which is not a node of this flow",
                   "[flows.main.nodes.agent] no call can reach this node from start 'language': "
                   "link it from another node or remove it"]


def test_unknown_prompt(tmp_path):
    out = problems(tmp_path, GOOD.replace('prompt = "menu"', 'prompt = "mnu"'))
    assert out == ["[flows.main.nodes.menu] prompt uses prompt 'mnu', which is not defined under [prompts]"]


def test_unreachable_node(tmp_path):
    out = problems(tmp_path, GOOD + '\n[flows.main.nodes.orphan]\ntype = "hangup"\n')
    assert out == ["[flows.main.nodes.orphan] no call can reach this node from start 'language': "
                   "link it from another node or remove it"]


def test_loop_with_no_exit(tmp_path):
    text = GOOD.replace('options = { "1" = "bye", "0" = "agent" }\non_fail = "bye"',
                        'options = { "1" = "menu2" }\non_fail = "menu2"')
    text += ('\n[flows.main.nodes.menu2]\ntype = "menu"\nprompt = "menu"\noptions = { "1" = "menu" }\n'
             'on_fail = "menu"\n')
    out = problems(tmp_path, text)
    assert "[flows.main.nodes.menu] a loop with no exit" in out[-2]
    assert "[flows.main.nodes.menu2] a loop with no exit" in out[-1]


def test_missing_wav_prompt_and_bad_types(tmp_path):
    text = GOOD + '\n[prompts.music]\nwav = "hold.wav"\n'
    text = text.replace('type = "transfer"', 'type = "teleport"').replace('language = "cmn"', 'language = "fr"')
    out = problems(tmp_path, text)
    assert any("[prompts.music] WAV file" in p and "hold.wav does not exist" in p for p in out)
    assert any("[flows.main.nodes.agent] unknown node type 'teleport'" in p for p in out)
    assert any("[node] language 'fr' is not known" in p for p in out)


def test_missing_translation_for_a_selectable_language(tmp_path):
    out = problems(tmp_path, GOOD.replace('en = "Goodbye"\n', ""))
    assert out == ["[prompts.bye] no text in English, which callers of flow 'main' can choose"]


def test_settings_a_node_type_does_not_take(tmp_path):
    out = problems(tmp_path, GOOD.replace('type = "hangup"\nprompt = "bye"', 'type = "hangup"\nprompt = "bye"\nnext = "menu"'))
    assert out == ["[flows.main.nodes.bye] hangup nodes have no setting 'next' (they take: prompt)"]


def test_not_toml_and_no_file(tmp_path):
    assert "not valid TOML" in problems(tmp_path, "[node\n")[0]
    with pytest.raises(ConfigError, match="the file does not exist"):
        load(tmp_path / "nope.toml")


def test_lines_and_node_section(tmp_path):
    text = GOOD.replace('[lines.1]', '[lines.9]').replace('card = "socket://127.0.0.1:7000"\n', "")
    out = problems(tmp_path, text)
    assert "[node] card is missing" in out
    assert "[lines.9] lines are numbered 1 to 8" in out
