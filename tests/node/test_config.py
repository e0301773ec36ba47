"""The node's TOML configuration: a good one loads; every kind of mistake is named precisely."""

from __future__ import annotations

from datetime import datetime

import pytest

from node_agent.config import ConfigError, load
from node_agent.schedule import is_open

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
    assert "[lines.9] lines are numbered 1 to 8 (plain digits, no leading zero)" in out


# -- every kind of bad input is named, none escapes as another exception --------------------------------
NO_NODE = GOOD[GOOD.index("[lines.1]"):]
NO_LINES = GOOD[:GOOD.index("[lines.1]")] + GOOD[GOOD.index("[prompts.choose]"):]
NO_PROMPTS = GOOD[:GOOD.index("[prompts.choose]")] + GOOD[GOOD.index("[flows.main]"):]
SCHEDULE = ('\n[flows.main.nodes.hours]\ntype = "schedule"\nhours = {{ {hours} }}\n{extra}'
            'open = "language"\nclosed = "bye"\n')


def with_schedule(hours: str = 'mon = "09:00-17:00"', extra: str = "") -> str:
    return GOOD.replace('start = "language"', 'start = "hours"') + SCHEDULE.format(hours=hours, extra=extra)


def deep(n: int) -> str:
    return "x = " + "[" * n + "]" * n + "\n"


HQ = """
[hq]
url = "wss://127.0.0.1:8443/node"
cert = "certs/node.crt"
key = "certs/node.key"
ca = "certs/ca.crt"
"""

BAD_CONFIGS = {  # name: (text, a problem that must be reported)
    "start is a list": (GOOD.replace('start = "language"', 'start = ["language"]'),
                        "[flows.main] start ['language'] is not a node of this flow"),
    "node is a number": ("node = 5\n" + NO_NODE, "[node] must be a table ([node] …) of settings, not 5"),
    "line key is a superscript": (GOOD.replace("[lines.1]", '[lines."²"]'), "[lines.'²'] lines are numbered 1 to 8"),
    "line key is an Arabic-Indic one": (GOOD + '[lines."١"]\nnumber = "x"\nflow = "main"\n',
                                        "[lines.'١'] lines are numbered 1 to 8"),
    "line key has a leading zero": (GOOD.replace("[lines.1]", '[lines."01"]'), "[lines.01] lines are numbered"),
    "flows is a number": ("flows = 5\n" + GOOD[:GOOD.index("[flows.main]")], "[flows] must be a table"),
    "prompts is a string": ('prompts = "x"\n' + NO_PROMPTS, "[prompts] must be a table"),
    "lines is a list": ("lines = [1]\n" + NO_LINES, "[lines] must be a table"),
    "a flow is a number": (GOOD.replace("[lines.1]", "[flows]\nbad = 5\n\n[lines.1]"),
                           "[flows.bad] a flow is a table with start and nodes"),
    "a prompt is a string": (GOOD.replace("[lines.1]", '[prompts]\nbad = "x"\n\n[lines.1]'),
                             "[prompts.bad] a prompt is a table"),
    "a line is a string": (GOOD.replace("[lines.1]", '[lines]\n2 = "x"\n\n[lines.1]'), "[lines.2] a line is a table"),
    "nodes is a number": (GOOD + '\n[flows.other]\nstart = "a"\nnodes = 5\n', "[flows.other] nodes must be a table"),
    "a node is a number": (GOOD + '\n[flows.other]\nstart = "a"\nnodes = { a = 5 }\n',
                           "[flows.other.nodes.a] a node is a table with a type"),
    "type is a list": (GOOD.replace('type = "transfer"', 'type = ["transfer"]'),
                       "[flows.main.nodes.agent] unknown node type ['transfer']"),
    "card is http": (GOOD.replace("socket://127.0.0.1:7000", "http://127.0.0.1:7000"),
                     "[node] card: no HAL backend for 'http://127.0.0.1:7000'"),
    "card has no port": (GOOD.replace("socket://127.0.0.1:7000", "socket://127.0.0.1"),
                         "a network card URL needs a host and a port"),
    "prompt with a NUL": (GOOD.replace('en = "Goodbye"', 'en = "Good\\u0000bye"'),
                          "[prompts.bye] the English text contains the control character U+0000"),
    "prompt of 300 kB": (GOOD.replace('en = "Goodbye"', 'en = "' + "a" * 300_000 + '"'),
                         "[prompts.bye] the English text is 300000 characters long"),
    "max_daily_failures is true": (GOOD.replace('language = "cmn"', 'language = "cmn"\nmax_daily_failures = true'),
                                   "[node] max_daily_failures must be a whole number from 1 to 1000, not True"),
    "timeout_ms of 2**63-1": (GOOD.replace('prompt = "menu"\n', 'prompt = "menu"\ntimeout_ms = 9223372036854775807\n'),
                              "[flows.main.nodes.menu] timeout_ms must be a whole number from 100 to 300000"),
    "retries of 10**9": (GOOD.replace('prompt = "menu"\n', 'prompt = "menu"\nretries = 1000000000\n'),
                         "[flows.main.nodes.menu] retries must be a whole number from 1 to 10"),
    "retries is a float": (GOOD.replace('prompt = "menu"\n', 'prompt = "menu"\nretries = 2.5\n'),
                           "retries must be a whole number from 1 to 10, not 2.5"),
    "holiday 2026-13-45": (with_schedule(extra='holidays = ["2026-13-45"]\n'),
                           "holidays: '2026-13-45' is not a date of the calendar"),
    "holiday is a number": (with_schedule(extra="holidays = [20261001]\n"), "holidays: 20261001 is not a date"),
    "hours start at their end": (with_schedule('mon = "09:00-09:00"'), "hours.mon: '09:00-09:00' is empty"),
    "hours past 24:00": (with_schedule('mon = "09:00-24:30"'), "hours.mon: '09:00-24:30' is not a range"),
    "no hours at all": (with_schedule(""), "hours names no day: the branch would never be open"),
    "language option is a list": (GOOD.replace('"3" = "en"', '"3" = ["en"]'),
                                  "option '3' selects language ['en']: use one of"),
    "store_as leaves its folder": (GOOD.replace('"1" = "bye"', '"1" = "code"') +
                                   '\n[flows.main.nodes.code]\ntype = "collect"\nprompt = "menu"\n'
                                   'store_as = "../x"\nnext = "bye"\non_fail = "bye"\n',
                                   "store_as '../x' must be a lower-case name"),
    "min_digits above max_digits": (GOOD.replace('"1" = "bye"', '"1" = "code"') +
                                    '\n[flows.main.nodes.code]\ntype = "collect"\nprompt = "menu"\nmin_digits = 6\n'
                                    'max_digits = 4\nstore_as = "code"\nnext = "bye"\non_fail = "bye"\n',
                                    "min_digits (6) is more than max_digits (4)"),
    "data_dir is a number": (GOOD.replace('language = "cmn"', 'language = "cmn"\ndata_dir = 5'),
                             "[node] data_dir must be a non-empty string, not 5"),
    "wav is a number": (GOOD + "\n[prompts.music]\nwav = 5\n", "[prompts.music] wav must be a non-empty string"),
    "a name with a line break": (GOOD.replace('id = "sz-futian-01"', 'id = "sz\\nfutian"'),
                                 "[node] id contains the control character U+000A"),
    "nested 100,000 deep": (deep(100_000), "not valid TOML"),
    "hq under [node]": (GOOD.replace('language = "cmn"', 'language = "cmn"\nhq = "wss://127.0.0.1:8443/node"'),
                        "[node] hq is not a [node] setting: the uplink has its own section, [hq]"),
    "hq is a string": ('hq = "wss://127.0.0.1:8443/node"\n' + GOOD, "[hq] must be a table ([hq] …)"),
    "hq url is plain http": (GOOD + HQ.replace("wss://", "http://"), "[hq] url 'http://127.0.0.1:8443/node' must be wss://"),
    "hq url has no port": (GOOD + HQ.replace(":8443", ""), "must be wss://HOST:PORT/node"),
    "hq url is missing": (GOOD + HQ.replace('url = "wss://127.0.0.1:8443/node"\n', ""), "[hq] url is missing"),
    "hq cert file is missing": (GOOD + HQ, "[hq] cert: "),
    "hq has an unknown setting": (GOOD + HQ + 'password = "x"\n', "[hq] unknown setting 'password'"),
    "hq with a node id no certificate can have": (GOOD.replace('id = "sz-futian-01"', 'id = "sz futian"') + HQ,
                                                  "[node] id 'sz futian' cannot name a certificate"),
    # waiting for an agent
    "hq hold prompt unknown": (GOOD + HQ + 'hold_prompt = "music"\n',
                               "[hq] hold_prompt uses prompt 'music', which is not defined under [prompts]"),
    "hq announce interval too short": (GOOD + HQ + "announce_every_s = 1\n",
                                       "[hq] announce_every_s must be a number of seconds from 5 to 3600, not 1"),
    "hq max wait is a string": (GOOD + HQ + 'max_wait_s = "10 min"\n', "[hq] max_wait_s must be a number of seconds"),
    "hq position prompt without {n}": (GOOD + HQ + 'position_prompt = "menu"\n',
                                       "[prompts.menu] the position_prompt of [hq] is spoken with the caller's place"),
    "hq callback key is no key": (GOOD + HQ + 'callback_key = "x"\n', "[hq] callback_key 'x' is not a phone key"),
    "hq callback key without prompts": (GOOD + HQ + 'callback_key = "9"\n',
                                        "[hq] callback_key needs callback_prompt (asks for the number)"),
    "hq callback prompt without key": (GOOD + HQ + 'callback_prompt = "bye"\n',
                                       "callback_prompt and callback_confirm_prompt are used only with callback_key"),
    "hq flatten is a string": (GOOD + HQ + 'flatten_dtmf = "yes"\n', "[hq] flatten_dtmf must be true or false"),
    "hq verify on fail unknown": (GOOD + HQ + 'verify_on_fail = "retry"\n',
                                  "[hq] verify_on_fail 'retry' is not one of hangup, agent"),
    "hq ice network is not a network": (GOOD + HQ + '[hq.ice]\nnetworks = ["lan"]\n',
                                        "[hq.ice]: ICE networks: 'lan' is not a network"),
    "hq ice has a stray setting": (GOOD + HQ + '[hq.ice]\nstun = "x"\n', "[hq.ice]: unknown setting(s) stun"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_configuration_is_named(tmp_path, name):
    text, want = BAD_CONFIGS[name]
    out = problems(tmp_path, text)
    assert any(want in p for p in out), out


@pytest.mark.parametrize("data, want", [(b"[node]\nid = \"caf\xe9\"\n", "line 2: not UTF-8 (byte 0xe9)"),
                                        (bytes(range(256)) * 4, "not UTF-8")])
def test_a_file_that_is_not_utf8_is_named(tmp_path, data, want):
    path = tmp_path / "branch.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert str(path) in str(exc.value) and want in str(exc.value)


def test_a_directory_is_not_a_configuration(tmp_path):
    with pytest.raises(ConfigError, match="this is a directory: give the configuration file itself"):
        load(tmp_path)


def test_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "branch.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load(path).node_id == "sz-futian-01"


# -- schedules, also across midnight ----------------------------------------------------------------------
def test_a_night_shift_loads_and_is_open_across_midnight(tmp_path):
    cfg = load(write(tmp_path, with_schedule('fri = "22:00-06:00", sat = "12:00-24:00"',
                                             'holidays = ["2026-12-25"]\n')))
    node = cfg.flows["main"].nodes["hours"]
    hours, holidays = node["hours"], node["holidays"]

    def at(text: str) -> bool:
        return is_open(hours, holidays, datetime.fromisoformat(text))

    # 2026-12-04 is a Friday
    assert not at("2026-12-04T21:59") and at("2026-12-04T22:00") and at("2026-12-04T23:59")
    assert at("2026-12-05T00:00") and at("2026-12-05T05:59")  # Saturday morning: still Friday's shift
    assert not at("2026-12-05T06:00") and not at("2026-12-05T11:59") and at("2026-12-05T12:00")
    assert at("2026-12-05T23:59") and not at("2026-12-06T00:00")  # Saturday's span ends at 24:00
    assert not at("2026-12-03T23:00") and not at("2026-12-04T05:00")  # Thursday has no shift
    # 2026-12-25 is a Friday and a holiday: its shift does not start, so Saturday 03:00 is closed
    assert not at("2026-12-25T23:00") and not at("2026-12-26T03:00") and at("2026-12-26T12:00")


def test_day_spans_still_end_when_they_say(tmp_path):
    hours = {"mon": "09:00-17:30"}
    assert is_open(hours, [], datetime(2026, 11, 30, 9, 0)) and is_open(hours, [], datetime(2026, 11, 30, 17, 29))
    assert not is_open(hours, [], datetime(2026, 11, 30, 17, 30)) and not is_open(hours, [], datetime(2026, 12, 1, 3))


def test_an_hq_section_loads_with_its_files_and_none_means_no_uplink(tmp_path):
    path = tmp_path / "branch.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert load(path).hq is None
    (tmp_path / "certs").mkdir()
    for name in ("node.crt", "node.key", "ca.crt"):
        (tmp_path / "certs" / name).write_text("x")
    path.write_text(GOOD + HQ, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:  # files that are not a certificate and its key
        load(path)
    assert "[hq] " in str(exc.value) and "node.crt / " in str(exc.value) and "not a certificate and its private key" \
        in str(exc.value)
    from central_link import certs
    paths = certs.Paths(tmp_path / "certs")
    for name in ("node.crt", "node.key", "ca.crt"):
        (tmp_path / "certs" / name).unlink()
    certs.make_ca(paths)
    certs.make_node(paths, "sz-futian-01")
    (tmp_path / "certs" / "node-sz-futian-01.crt").rename(tmp_path / "certs" / "node.crt")
    (tmp_path / "certs" / "node-sz-futian-01.key").rename(tmp_path / "certs" / "node.key")
    hq = load(path).hq
    assert hq.url == "wss://127.0.0.1:8443/node"
    assert hq.forwarding.hold_prompt is None and hq.forwarding.ice is None  # nothing to play, ICE as aiortc's
    assert hq.forwarding.flatten_dtmf and hq.forwarding.verify_on_fail == "hangup"  # safe by default
    text = GOOD.replace('[prompts.bye]', '[prompts.place]\ncmn = "您前面还有{n}位"\nen = "You are number {n} in line"\n'
                        '[prompts.bye]')
    path.write_text(text + HQ + 'hold_prompt = "menu"\nposition_prompt = "place"\nannounce_every_s = 45\n'
                    'callback_key = "9"\ncallback_prompt = "choose"\ncallback_confirm_prompt = "bye"\n'
                    'flatten_dtmf = false\nverify_on_fail = "agent"\n[hq.ice]\nnetworks = ["127.0.0.0/8"]\n', encoding="utf-8")
    fw = load(path).hq.forwarding
    assert (fw.hold_prompt, fw.position_prompt, fw.announce_every_s, fw.callback_key, fw.hold_every_s) == \
        ("menu", "place", 45.0, "9", 20.0)
    assert (fw.flatten_dtmf, fw.verify_on_fail) == (False, "agent")
    assert fw.ice.networks == ("127.0.0.0/8",)
    assert (hq.cert, hq.key, hq.ca) == tuple((tmp_path / "certs" / n).resolve() for n in ("node.crt", "node.key", "ca.crt"))
