// The agent console: a static page over the hub's JSON API (/agent/...) and its event socket
// (/agent/events). No framework, nothing from outside this hub. The hub is the truth: every view
// the page draws is one the hub sent (an answer or a "status" event); the page only counts time.
"use strict";

const $ = (id) => document.getElementById(id);
// The agent's microphone as the browser gives it; no STUN or TURN server unless the hub says so.
const MIC = { audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false }, video: false };
const ICE_GATHER_MS = 3000;
const FIELD_NAMES = { account: "Account", pin: "PIN" };
const FIELD_ASK = { account: "the account", pin: "the PIN" };
// the node's capture states (central_link/protocol.py CAPTURE_STATES), and the hub's own asked_again
const FIELD_STATES = { waiting: "waiting", started: "starting", prompting: "prompting the caller", keying: "keying",
                       checking: "checking", invalid: "not valid", done: "done", asked_again: "asked again" };
const OUTCOMES = {
  verified: (a) => `Verified: account ${a}`,
  failed: () => "Failed: the caller could not be verified",
  locked: () => "Locked: too many failures, the account is blocked",
  cancelled: () => "Verification cancelled",
  unavailable: () => "Verification not available on this call",
};

const S = {
  me: null, ws: null, retry: 0, retryTimer: null, loggedIn: false,
  pc: null, mic: null, muted: false,
  offerCall: null, offerShownAt: 0, offerWaited: 0,   // the time in queue, ticking from the hub's figure
  wrapUntil: 0, talkCall: null, talkSince: 0,
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, { quiet = false } = {}) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, "Cannot reach the hub: check the network, then try again.");
  }
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON: named below */ }
  if (!r.ok) {
    const msg = (data && data.error) || `The hub answered ${r.status} ${r.statusText}.`;
    if (r.status === 401) showLogin(quiet ? "" : msg);
    throw new ApiError(r.status, msg);
  }
  return data;
}

// -- messages to the agent ------------------------------------------------------------------------
function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = !text;
}
function notice(text) { $("notice").textContent = text; }

async function act(button, fn) {
  if (button) button.disabled = true;
  showError("");
  try {
    await fn();
  } catch (e) {
    showError(e instanceof ApiError ? e.message : `Something went wrong: ${e.message || e}`);
  } finally {
    if (button) button.disabled = false;
    if (S.me) render(S.me);  // the buttons as the state allows them
  }
}

// -- drawing the hub's view -----------------------------------------------------------------------
function fmtTime(s) {
  s = Math.max(0, Math.floor(s));
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  const mm = h ? String(m % 60).padStart(2, "0") : String(m);
  return (h ? `${h}:` : "") + `${mm}:${String(s % 60).padStart(2, "0")}`;
}

function drawPop(dl, pop, waitedId) {
  const auth = pop.auth === "verified" ?
               `verified, account ${pop.account}` + (pop.account_class ? ` (${pop.account_class})` : "") :
               pop.auth === "failed" ? "failed in the IVR" : "not authenticated";
  const rows = [
    ["Branch", pop.node], ["Line", String(pop.line)], ["Caller ID", pop.caller_id || "withheld"],
    ["IVR path", (pop.ivr_path || []).join(" › ") || "—"], ["Language", pop.language || "—"],
    ["Authentication", auth], ["Priority", String(pop.priority)],
  ];
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    dd.dataset.field = k.toLowerCase().replace(/ /g, "-");
    dl.append(dt, dd);
  }
  if (waitedId) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = "Time in queue";
    dd.id = waitedId;
    dd.dataset.field = "time-in-queue";
    dl.append(dt, dd);
  }
}

function render(me) {
  // an answer to a request can arrive after a newer pushed view (or the reverse): draw the newest
  if (S.me && me !== S.me && me.rev < S.me.rev) me = S.me;
  S.me = me;
  if (me.status === "logged_out") { showLogin("You are logged out."); return; }
  $("who").textContent = `${me.name} (${me.role})`;
  $("status").textContent = me.status.replace("_", " ");
  $("status").className = `badge ${me.status}`;
  $("reason").textContent = me.status === "not_ready" && me.reason ? `(${me.reason})` : "";
  $("state").textContent = me.state.replace("_", "-");
  $("state").className = `badge ${me.state}`;
  const idle = me.state === "idle";
  $("ready").disabled = me.status === "ready";
  $("not-ready").disabled = me.status === "not_ready" && me.reason === $("reason-code").value;
  $("logout-pending").hidden = !me.logout_pending;

  $("wrapup").hidden = me.state !== "wrap_up";
  if (me.state === "wrap_up") S.wrapUntil = performance.now() / 1000 + (me.wrap_up_remaining_s || 0);

  const offered = me.state === "offered" && me.offered;
  $("offer").hidden = !offered;
  if (offered) {
    if (S.offerCall !== me.offered.id) {
      S.offerCall = me.offered.id;
      S.offerShownAt = performance.now() / 1000;
      S.offerWaited = me.offered.waited_s;
      drawPop($("offer-pop"), me.offered, "offer-waited");
    }
    $("answer").disabled = !!S.pc;
  } else {
    S.offerCall = null;
  }

  const talk = me.talking && (me.state === "talking" || me.state === "wrap_up");
  $("call").hidden = !talk;
  if (talk) {
    if (S.talkCall !== me.talking.id) { S.talkCall = me.talking.id; S.talkSince = performance.now() / 1000; }
    drawPop($("call-pop"), me.talking, null);
    const talking = me.state === "talking";
    $("call-controls").hidden = !talking;
    $("call-title").textContent = talking ? "Call" : "Last call (wrap-up)";
    $("talk-label").textContent = talking ? "Talking for" : "Talked for";
    const running = me.capture && me.capture.outcome === null;
    $("verify").disabled = !talking || running;
    drawCapture(me.capture);
  } else {
    S.talkCall = null;
  }
  if (me.state !== "talking" && me.state !== "offered" && S.pc) hangUpMedia();  // ended elsewhere
  tick();
}

function drawCapture(cap) {
  $("capture").hidden = !cap;
  if (!cap) return;
  const running = cap.outcome === null;
  $("capture-title").textContent = running ? "Verifying the caller" : "Verification";
  const ul = $("capture-fields");
  if (ul.dataset.capture !== cap.id) {  // rows made once per capture, then updated in place (focus stays)
    ul.dataset.capture = cap.id;
    ul.replaceChildren(...cap.fields.map(captureRow));
  }
  for (const f of cap.fields) {
    const p = cap.progress[f] || { keyed: 0, state: "waiting" };
    const li = $(`capture-${f}`);
    const dots = li.querySelector(".dots");
    dots.dataset.keyed = String(p.keyed);
    dots.textContent = "●".repeat(p.keyed);
    dots.setAttribute("aria-label", `${p.keyed} digit${p.keyed === 1 ? "" : "s"} keyed`);
    li.querySelector(".state").textContent = FIELD_STATES[p.state] || p.state.replace(/_/g, " ");
    li.querySelector("button").hidden = !running;
  }
  $("capture-cancel").hidden = !running;
  const out = $("capture-outcome");
  out.className = `outcome ${cap.outcome || ""}`;
  out.dataset.outcome = cap.outcome || "";
  out.textContent = running ? "The caller is keying…" : (OUTCOMES[cap.outcome] || (() => cap.outcome))(cap.account);
}

function captureRow(f) {
  const li = document.createElement("li");
  li.id = `capture-${f}`;
  const name = document.createElement("span");
  name.className = "field";
  name.textContent = FIELD_NAMES[f] || f;
  const dots = document.createElement("span");
  dots.className = "dots";
  const state = document.createElement("span");
  state.className = "state";
  const again = document.createElement("button");
  again.type = "button";
  again.textContent = `Ask again for ${FIELD_ASK[f] || f}`;
  again.addEventListener("click", () => act(again, async () => {
    render(await api("POST", "/agent/verify/again", { field: f }));
  }));
  li.append(name, dots, state, again);
  return li;
}

function tick() {
  const now = performance.now() / 1000;
  const w = $("offer-waited");
  if (w && S.offerCall) w.textContent = fmtTime(S.offerWaited + now - S.offerShownAt);
  if (S.me && S.me.state === "wrap_up") $("wrapup-remaining").textContent = fmtTime(Math.ceil(S.wrapUntil - now));
  if (S.talkCall && S.me && S.me.state === "talking") $("talk-time").textContent = fmtTime(now - S.talkSince);
}

// -- login, the event socket ----------------------------------------------------------------------
function showLogin(text) {
  S.loggedIn = false;
  S.me = null;
  if (S.ws) { const ws = S.ws; S.ws = null; ws.close(); }
  clearTimeout(S.retryTimer);
  hangUpMedia();
  $("console").hidden = true;
  $("logout").hidden = $("who").hidden = $("link").hidden = true;
  $("login").hidden = false;
  showError(text || "");
  $("login-name").focus();
}

function showConsole(me) {
  S.loggedIn = true;
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = $("who").hidden = $("link").hidden = false;
  render(me);
  connectEvents();
}

function setLink(ok, text) {
  $("link").textContent = text;
  $("link").className = `link ${ok ? "ok" : "down"}`;
}

function connectEvents() {
  if (S.ws || !S.loggedIn) return;
  const ws = new WebSocket(`wss://${location.host}/agent/events`);
  S.ws = ws;
  setLink(false, "connecting…");
  ws.onopen = () => { S.retry = 0; setLink(true, "live"); };
  ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  ws.onclose = (e) => {
    if (S.ws !== ws) return;  // replaced or closed on purpose
    S.ws = null;
    if (e.code === 4001 || e.code === 4002) { showLogin(e.code === 4001 ? "You are logged out." : e.reason); return; }
    if (!S.loggedIn) return;
    const delay = Math.min(10000, 500 * 2 ** S.retry++);
    setLink(false, `reconnecting in ${Math.round(delay / 1000)} s…`);
    S.retryTimer = setTimeout(reconnect, delay);
  };
}

async function reconnect() {
  try {
    const me = await api("GET", "/agent/me");  // what happened meanwhile; a 401 shows the login form
    S.me = null;  // whatever the hub's numbering is now (it may have restarted), this view is the latest
    render(me);
    connectEvents();
  } catch (e) {
    if (e.status !== 401 && S.loggedIn) {
      const delay = Math.min(10000, 500 * 2 ** S.retry++);
      setLink(false, `hub unreachable: retrying in ${Math.round(delay / 1000)} s…`);
      S.retryTimer = setTimeout(reconnect, delay);
    }
  }
}

function onEvent(ev) {
  switch (ev.type) {
    case "status": {
      const { type, ...view } = ev;
      render(view);
      break;
    }
    case "offer":
      notice(`Incoming call from ${ev.pop ? ev.pop.caller_id || "a withheld number" : "a caller"}.`);
      if (document.activeElement === document.body) $("answer").focus();
      break;
    case "offer_withdrawn":
      notice(`The call was withdrawn: ${ev.reason}.`);
      break;
    case "call_ended":
      hangUpMedia();
      notice(`Call ended: ${ev.reason}.`);
      break;
    case "verify_progress":
    case "verify_result": {
      const cap = S.me && S.me.capture;
      if (!cap || cap.id !== ev.capture) break;
      if (ev.type === "verify_progress") cap.progress[ev.field] = { keyed: ev.keyed, state: ev.state };
      else {
        cap.outcome = ev.outcome;
        cap.account = ev.account;
        if (ev.outcome === "verified" && S.me.talking) {
          S.me.talking.auth = "verified";
          S.me.talking.account = ev.account;
        }
        notice(OUTCOMES[ev.outcome] ? OUTCOMES[ev.outcome](ev.account) + "." : ev.outcome);
      }
      render(S.me);
      break;
    }
    default:
      break;
  }
}

// -- media: the browser's own WebRTC --------------------------------------------------------------
function iceGathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); } };
    const t = setTimeout(resolve, ms);  // send what was gathered: the node answers with its own
    pc.addEventListener("icegatheringstatechange", done);
  });
}

function hangUpMedia() {
  if (S.pc) { S.pc.ontrack = S.pc.onconnectionstatechange = null; S.pc.close(); }
  if (S.mic) S.mic.getTracks().forEach((t) => t.stop());
  S.pc = S.mic = null;
  S.muted = false;
  $("mute").setAttribute("aria-pressed", "false");
  $("mute").textContent = "Mute";
  $("remote-audio").srcObject = null;
  $("media").textContent = "not connected";
}

async function answer() {
  let mic;
  try {
    mic = await navigator.mediaDevices.getUserMedia(MIC);
  } catch (e) {
    throw new Error(`no microphone (${e.name}): allow this page to use the microphone, then answer again`);
  }
  const pc = new RTCPeerConnection({ iceServers: [] });
  S.pc = pc;
  S.mic = mic;
  mic.getAudioTracks().forEach((t) => pc.addTrack(t, mic));
  pc.ontrack = (e) => {
    const audio = $("remote-audio");
    audio.srcObject = e.streams[0] || new MediaStream([e.track]);
    audio.play().catch(() => showError("The browser blocked the call's audio: click anywhere on the page."));
  };
  pc.onconnectionstatechange = () => {
    $("media").textContent = pc.connectionState;
    if (pc.connectionState === "failed") showError("The audio connection to the branch failed: hang up.");
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, ICE_GATHER_MS);
    const r = await api("POST", "/agent/answer", { sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: r.sdp });
    notice("Connected to the caller.");
    render(r);
  } catch (e) {
    hangUpMedia();
    throw e;
  }
}

// -- wiring ---------------------------------------------------------------------------------------
function wire() {
  $("error-close").addEventListener("click", () => showError(""));
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act($("login-submit"), async () => {
      const me = await api("POST", "/agent/login", { name: $("login-name").value, password: $("login-password").value });
      $("login-password").value = "";
      notice("");
      showConsole(me);
    });
  });
  $("logout").addEventListener("click", () => act($("logout"), async () => {
    const r = await api("POST", "/agent/logout", {});
    if (r.logout === "done") showLogin("You are logged out.");
    else { notice("You will be logged out when this call ends."); render(r); }
  }));
  $("ready").addEventListener("click", () => act($("ready"), async () => {
    render(await api("POST", "/agent/status", { status: "ready" }));
  }));
  $("not-ready").addEventListener("click", () => act($("not-ready"), async () => {
    render(await api("POST", "/agent/status", { status: "not_ready", reason: $("reason-code").value }));
  }));
  $("reason-code").addEventListener("change", () => S.me && render(S.me));
  $("wrapup-done").addEventListener("click", () => act($("wrapup-done"), async () => {
    render(await api("POST", "/agent/wrapup-done", {}));
  }));
  $("answer").addEventListener("click", () => act($("answer"), answer));
  $("hangup").addEventListener("click", () => act($("hangup"), async () => {
    hangUpMedia();
    render(await api("POST", "/agent/hangup", {}));
  }));
  $("mute").addEventListener("click", () => {
    if (!S.mic) return;
    S.muted = !S.muted;
    S.mic.getAudioTracks().forEach((t) => { t.enabled = !S.muted; });
    $("mute").setAttribute("aria-pressed", String(S.muted));
    $("mute").textContent = S.muted ? "Unmute" : "Mute";
  });
  $("verify").addEventListener("click", () => act($("verify"), async () => {
    render(await api("POST", "/agent/verify", {}));
  }));
  $("capture-cancel").addEventListener("click", () => act($("capture-cancel"), async () => {
    render(await api("POST", "/agent/verify/cancel", {}));
  }));
  setInterval(tick, 250);
}

async function start() {
  wire();
  try {
    showConsole(await api("GET", "/agent/me", undefined, { quiet: true }));
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);  // a 401 showed the login form already
  }
}

start();
