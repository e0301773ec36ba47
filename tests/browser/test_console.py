"""The agent console in a real browser (Debian's Chromium through Playwright, in a network
namespace of its own) against a real hub, with a scripted node whose media is the node's real
MediaSession: log in, ready, the offer's screen pop, answer with audio both ways (each side hears
the other's tone at its frequency), mute, verify caller with per-field dots and the outcomes, hang
up into wrap-up and back to ready, the caller hanging up, logout from another tab, the event
socket reconnecting, and requests without a session or beyond the agent's role refused."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import expect

from central_link.hq.push import Close
from central_link.hq.queue import Auth, QueuedCall
from drivers.dsp import DtmfGenerator, DtmfReceiver, dbm0
from tests.browser.conftest import MIC_HZ, NODE_HZ, PASSWORDS, WRAP_UP_S
from tests.browser.page_audio import peak, recorded_seconds, start_recording, stop_recording
from tests.central_link.peers import dominant, until

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]
WAIT = 15.0  # seconds for what takes ~1 s on an idle machine (connecting, hearing a tone)

def queue_call(hq, call_id: str = "c1", **kw) -> None:
    """What the hub's node side does when a node queues a call."""
    kw = {"node": "sz-futian-01", "line": 3, "caller_id": "+8675512345", "ivr_path": ("main", "cards"),
          "language": "zh"} | kw
    hq.hub.agent_api.changed(hq.hub.router.enqueue(QueuedCall(call_id, **kw)))


def pop(page, field: str):
    return page.locator(f"#offer-pop [data-field={field}]")


async def log_in(page, hq, name: str = "alice", ready: bool = True) -> None:
    await page.goto(hq.url)
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORDS[name])
    await page.press("#login-password", "Enter")  # the keyboard is enough
    await expect(page.locator("#console")).to_be_visible()
    await expect(page.locator("#link")).to_have_text("live")
    if ready:
        await page.click("#ready")
        await expect(page.locator("#status")).to_have_text("ready")


async def answer(page, hq, call_id: str = "c1"):
    queue_call(hq, call_id)
    await expect(page.locator("#offer")).to_be_visible()
    await page.click("#answer")
    await expect(page.locator("#state")).to_have_text("talking")
    await expect(page.locator("#media")).to_have_text("connected", timeout=WAIT * 1000)
    return hq.node.legs[call_id]


async def test_login_ready_and_an_offer_with_its_full_screen_pop(page, hq):
    await log_in(page, hq, ready=False)
    await expect(page.locator("#status")).to_have_text("not ready")
    await expect(page.locator("#reason")).to_have_text("(login)")
    await expect(page.locator("#state")).to_have_text("idle")
    queue_call(hq, "c1", auth=Auth.VERIFIED, account="ACC-12", account_class="vip")
    assert hq.hub.router.agent("alice").state == "idle"  # not ready: offered nothing
    await page.select_option("#reason-code", "break")
    await page.click("#not-ready")
    await expect(page.locator("#reason")).to_have_text("(break)")
    await expect(page.locator("#offer")).to_be_hidden()
    await page.click("#ready")
    await expect(page.locator("#offer")).to_be_visible()
    await expect(page.locator("#state")).to_have_text("offered")
    for field, text in (("branch", "sz-futian-01"), ("line", "3"), ("caller-id", "+8675512345"),
                        ("ivr-path", "main › cards"), ("language", "zh"),
                        ("authentication", "verified, account ACC-12 (vip)")):
        await expect(pop(page, field)).to_have_text(text)
    waited = pop(page, "time-in-queue")
    await expect(waited).to_have_text(re.compile(r"^0:0\d$"))
    first = await waited.text_content()
    await expect(waited).not_to_have_text(first, timeout=3000)  # it ticks


async def test_an_answer_that_arrives_after_a_newer_pushed_view_does_not_undo_it(page, hq):
    """The answer to "ready" is held back until the offer it led to has been pushed and drawn: the
    older view it carries must not hide the offer (on a busy machine this order happens by itself)."""
    await log_in(page, hq, ready=False)
    held: asyncio.Future = asyncio.get_running_loop().create_future()

    async def hold_back(route) -> None:
        response = await route.fetch()  # the hub has made the agent ready (idle, no offer yet)
        queue_call(hq, "c1")  # then a call is offered and pushed
        await held
        await route.fulfill(response=response)

    await page.route("**/agent/status", hold_back)
    # the page is done with the answer when act() has re-enabled the button and drawn again: the
    # second time "disabled" is put on a button that did not have it (the first is the click)
    await page.evaluate("""() => {
      window.__readyOn = 0;
      new MutationObserver((records) => { window.__readyOn += records.filter(r => r.oldValue === null).length; })
        .observe(document.getElementById("ready"), { attributes: true, attributeFilter: ["disabled"], attributeOldValue: true });
    }""")
    await page.click("#ready")
    await expect(page.locator("#offer")).to_be_visible()
    held.set_result(None)
    await page.wait_for_function("() => window.__readyOn >= 2")
    assert await page.locator("#offer").is_visible(), "the older view in the late answer hid the offer"
    await expect(page.locator("#status")).to_have_text("ready")
    await page.click("#answer")
    await expect(page.locator("#state")).to_have_text("talking")


async def test_answer_audio_both_ways_mute_hang_up_wrap_up_then_ready(page, hq):
    await log_in(page, hq)
    leg = await answer(page, hq)
    await expect(page.locator("#call-pop [data-field=caller-id]")).to_have_text("+8675512345")
    assert hq.node.asked[0] == ("connect", "c1", "alice")

    # the page hears the caller's tone (measured in the page, by WebAudio)
    heard: dict = {}

    async def page_hears() -> bool:
        heard.update(await peak(page))
        return abs(heard["freq"] - NODE_HZ) <= 15 and heard["db"] > -70

    deadline = time.monotonic() + WAIT
    while not await page_hears():
        assert time.monotonic() < deadline, f"the page did not hear {NODE_HZ} Hz: {heard}"
        await asyncio.sleep(0.05)

    # the node hears the browser's microphone (a WAV of MIC_HZ)
    def loud(frames) -> list:
        return [f for f in frames if dbm0(f) > -40]

    start = len(leg.line.played)
    await until(lambda: len(loud(leg.line.played[start:])) >= 40, WAIT, "the browser's microphone at the node")
    freq, purity = dominant(loud(leg.line.played[start:])[-40:])
    assert abs(freq - MIC_HZ) <= 15 and purity > 0.5, (freq, purity)

    # mute: the node hears silence from the next frames on
    await page.click("#mute")
    await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
    mark = len(leg.line.played)
    await until(lambda: len(leg.line.played) > mark + 25
                and max(dbm0(f) for f in leg.line.played[-25:]) < -50, WAIT, "silence at the node while muted")
    await page.click("#mute")
    mark = len(leg.line.played)
    await until(lambda: len(loud(leg.line.played[mark:])) >= 10, WAIT, "the microphone again after unmute")

    # hang up: the node is told, wrap-up counts down, then the agent is ready and idle again
    await page.click("#hangup")
    await expect(page.locator("#state")).to_have_text("wrap-up")
    await expect(page.locator("#wrapup-remaining")).to_have_text(re.compile(r"^0:0[0-2]$"))
    assert ("hang_up", "c1", "alice") in hq.node.asked and "c1" not in hq.node.legs
    await expect(page.locator("#media")).to_have_text("not connected")
    await expect(page.locator("#state")).to_have_text("idle", timeout=(WRAP_UP_S + WAIT) * 1000)
    await expect(page.locator("#status")).to_have_text("ready")
    await expect(page.locator("#call")).to_be_hidden()


async def test_verify_caller_shows_dots_per_field_and_each_outcome(page, hq):
    await log_in(page, hq)
    await answer(page, hq)
    api = hq.hub.agent_api

    async def start_capture(fields=("account", "pin")) -> str:
        n = len([a for a in hq.node.asked if a[0] == "verify"])
        await page.click("#verify")
        await until(lambda: len([a for a in hq.node.asked if a[0] == "verify"]) > n, WAIT, "verify() at the node")
        ask = [a for a in hq.node.asked if a[0] == "verify"][-1]
        assert ask[1:3] == ("c1", "alice") and ask[4] == fields
        await expect(page.locator("#capture-outcome")).to_have_text("The caller is keying…")
        return ask[3]

    def progress(capture: str, field: str, keyed: int, state: str = "keying") -> None:
        api.notify_call("c1", {"type": "verify_progress", "capture": capture, "field": field, "keyed": keyed,
                               "state": state})

    def result(capture: str, outcome: str, account: str | None = None) -> None:
        api.notify_call("c1", {"type": "verify_result", "capture": capture, "outcome": outcome, "account": account})

    capture = await start_capture()
    await expect(page.locator("#verify")).to_be_disabled()  # one capture at a time
    dots = {f: page.locator(f"#capture-{f} .dots") for f in ("account", "pin")}
    for n in range(1, 7):
        progress(capture, "account", n)
    await expect(dots["account"]).to_have_text("●" * 6)
    await expect(dots["account"]).to_have_attribute("aria-label", "6 digits keyed")
    progress(capture, "account", 6, "done")
    await expect(page.locator("#capture-account .state")).to_have_text("done")
    for n in range(1, 4):
        progress(capture, "pin", n)
    await expect(dots["pin"]).to_have_text("●●●")
    await expect(dots["account"]).to_have_text("●" * 6)
    await page.focus("#capture-pin button")  # the agent is on "Ask again for the PIN" ...
    progress(capture, "pin", 3, "invalid")  # ... while the capture goes on
    await expect(page.locator("#capture-pin .state")).to_have_text("not valid")
    assert await page.evaluate("document.activeElement.textContent") == "Ask again for the PIN"  # focus stays
    await page.keyboard.press("Enter")
    await until(lambda: hq.node.asked[-1] == ("verify_again", "c1", capture, "pin"), WAIT, "verify_again(pin)")
    await expect(dots["pin"]).to_have_text("")
    await expect(page.locator("#capture-pin .state")).to_have_text("asked again")
    for n in range(1, 5):
        progress(capture, "pin", n)
    await expect(dots["pin"]).to_have_text("●●●●")
    result(capture, "verified", "ACC-77")
    await expect(page.locator("#capture-outcome")).to_have_text("Verified: account ACC-77")
    await expect(page.locator("#capture-outcome")).to_have_attribute("data-outcome", "verified")
    await expect(page.locator("#call-pop [data-field=authentication]")).to_have_text("verified, account ACC-77")
    await expect(page.locator("#capture-cancel")).to_be_hidden()

    capture = await start_capture()
    progress(capture, "account", 8)
    result(capture, "failed", "4321")  # an account not proven is never shown
    await expect(page.locator("#capture-outcome")).to_have_text("Failed: the caller could not be verified")
    capture = await start_capture()
    result(capture, "locked")
    await expect(page.locator("#capture-outcome")).to_have_text(re.compile("^Locked"))
    capture = await start_capture()
    await page.click("#capture-cancel")
    await until(lambda: hq.node.asked[-1] == ("verify_cancel", "c1", capture), WAIT, "verify_cancel at the node")
    await expect(page.locator("#capture-outcome")).to_have_text("Verification cancelled")
    assert "4321" not in await page.content()


async def test_the_caller_hanging_up_ends_the_call_in_the_page(page, hq):
    await log_in(page, hq)
    await answer(page, hq)
    hq.hub.agent_api.node_ended("c1", "caller", "the caller hung up")
    await expect(page.locator("#notice")).to_have_text("Call ended: the caller hung up.")
    await expect(page.locator("#state")).to_have_text("wrap-up")
    await expect(page.locator("#media")).to_have_text("not connected")
    await page.click("#wrapup-done")
    await expect(page.locator("#state")).to_have_text("idle")


async def test_the_event_socket_reconnects_and_a_logout_in_another_tab_ends_both(page, hq, context):
    await log_in(page, hq)
    await page.evaluate("""() => {  // every text the header's link indicator shows, in order
      const link = document.getElementById("link");
      window.__link = [];
      new MutationObserver(() => window.__link.push(link.textContent))
        .observe(link, { childList: true, characterData: true, subtree: true });
    }""")
    hq.hub.agent_api.sockets.close("alice", Close(1012, "hub restarting"))
    await until(lambda: hq.hub.agent_api.sockets.count("alice") == 0, WAIT, "the socket closed")
    await until(lambda: hq.hub.agent_api.sockets.count("alice") == 1, WAIT, "the page's socket back")
    await expect(page.locator("#link")).to_have_text("live")
    shown = await page.evaluate("window.__link")
    assert any(t.startswith("reconnecting in") for t in shown), shown  # the agent was told meanwhile
    queue_call(hq, "c2")  # events flow on the new socket
    await expect(page.locator("#offer")).to_be_visible()
    await expect(pop(page, "caller-id")).to_have_text("+8675512345")
    other = await context.new_page()  # a second tab of the same login
    await other.goto(hq.url)
    await expect(other.locator("#console")).to_be_visible()
    await other.click("#logout")
    await expect(other.locator("#login")).to_be_visible()
    await expect(page.locator("#login")).to_be_visible()  # the first tab was told by its socket
    await expect(page.locator("#error-text")).to_have_text("You are logged out.")


async def test_requests_without_a_session_or_beyond_the_role_are_refused(page, hq):
    r = await page.request.get(hq.url + "me")
    assert r.status == 401 and (await r.json())["error"].startswith("no session")
    await page.goto(hq.url)
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#error")).to_be_hidden()  # no session yet is not an error
    await page.fill("#login-name", "alice")
    await page.fill("#login-password", "wrong-password")
    await page.click("#login-submit")
    await expect(page.locator("#error-text")).to_have_text("wrong name or password")
    await log_in(page, hq)
    r = await page.request.post(hq.url + "supervisor/not-ready", data={"agent": "alice", "reason": "x"})
    assert r.status == 403 and "supervisor action" in (await r.json())["error"]
    headers = (await page.request.get(hq.url)).headers
    assert "script-src 'self'" in headers["content-security-policy"]


async def test_what_the_page_received_can_be_searched_for_dtmf(page, hq):
    """The recording of the page's audio and the DTMF detector together find digits the caller's
    side sent, so a search that finds none during a secure capture means something."""
    await log_in(page, hq)
    leg = await answer(page, hq)
    await start_recording(page)
    await until_page(page, 0.3)
    keys = DtmfGenerator(level_dbm0=-10, on_ms=80, off_ms=80)
    keys.put("1472")
    leg.line.source(keys)  # the caller keys four digits
    await until_page(page, 1.5)
    pcm = await stop_recording(page)
    rx = DtmfReceiver()
    found = "".join(d.digit for i in range(0, len(pcm) - 159, 160) for d in rx.feed(pcm[i:i + 160]))
    assert found == "1472", found


async def until_page(page, seconds: float) -> None:
    """Until the page's recording holds ``seconds`` of audio (it records in real time)."""
    deadline = time.monotonic() + WAIT
    while await recorded_seconds(page) < seconds:
        assert time.monotonic() < deadline, f"the page recorded less than {seconds} s in {WAIT} s"
        await asyncio.sleep(0.05)
