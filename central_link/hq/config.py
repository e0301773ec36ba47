"""The hub's configuration (TOML): where it listens, its certificates, the nodes it accepts.

``load(path)`` returns a :class:`HubConfig` or raises :class:`HubConfigError` listing every problem,
each naming the setting and what to do. Paths are relative to the file's folder.

    [hub]
    port = 8443                  # on 127.0.0.1: the nodes' WebSocket (mutual TLS)
    console_port = 8444          # on 127.0.0.1: the agent console and its API (HTTPS, no client certificate)
    data_dir = "data/hq"
    certs = "certs"              # the folder `nodectl certs` wrote: ca.crt, ca.crl, hub.crt, hub.key
    heartbeat_s = 10             # nodes send one this often; silent for 3 of them = gone
    nodes = ["sz-futian-01"]     # the node ids allowed to connect

    [queue]                      # the call queue's timers and priorities: see queue_config.py
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import NODE_ID_RE
from . import queue_config
from .queue import Priorities
from .routing import RoutingConfig

HOST = "127.0.0.1"  # the hub serves on loopback only (a deployment puts its own front in place)
KEYS = ("port", "console_port", "data_dir", "certs", "heartbeat_s", "nodes")


class HubConfigError(ValueError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        super().__init__(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n"
                         + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class HubConfig:
    path: Path
    port: int
    data_dir: Path
    cert: Path
    key: Path
    ca: Path
    crl: Path
    heartbeat_s: float
    nodes: tuple[str, ...]
    routing: RoutingConfig = RoutingConfig()
    priorities: Priorities = Priorities()
    console_port: int = 8444


def load(path: str | Path) -> HubConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise HubConfigError(path, ["the file does not exist: give the hub's configuration with -c FILE"]) from None
    except IsADirectoryError:
        raise HubConfigError(path, ["this is a directory: give the configuration file itself"]) from None
    except OSError as exc:
        raise HubConfigError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise HubConfigError(path, ["not UTF-8: save the file as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise HubConfigError(path, [f"not valid TOML: {exc}"]) from None
    return _check(path, raw)


def _check(path: Path, raw: dict[str, Any]) -> HubConfig:
    bad: list[str] = []
    for key in raw:
        if key not in ("hub", "queue"):
            bad.append(f"[{key}] unknown section: the hub's settings are under [hub] and [queue]")
    hub = raw.get("hub", {})
    if not isinstance(hub, dict):
        raise HubConfigError(path, ["[hub] must be a table of settings"])
    for key in hub:
        if key not in KEYS:
            bad.append(f"[hub] unknown setting {key!r}: the settings are {', '.join(KEYS)}")
    port = hub.get("port", 8443)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        bad.append(f"[hub] port must be a whole number from 0 to 65535 (0: any free one), not {port!r}")
    console = hub.get("console_port", 8444)
    if not isinstance(console, int) or isinstance(console, bool) or not 0 <= console <= 65535:
        bad.append(f"[hub] console_port must be a whole number from 0 to 65535 (0: any free one), not {console!r}")
        console = 8444
    elif console and console == port:
        bad.append(f"[hub] console_port {console} is the nodes' port too: give the agent console a port of its own")
    hb = hub.get("heartbeat_s", 10)
    if not isinstance(hb, int | float) or isinstance(hb, bool) or not 0.05 <= hb <= 300:
        bad.append(f"[hub] heartbeat_s must be a number of seconds from 0.05 to 300, not {hb!r}")
    base = path.parent
    folder = hub.get("certs")
    if not isinstance(folder, str) or not folder:
        bad.append("[hub] certs is missing: the folder `nodectl certs` wrote (ca.crt, ca.crl, hub.crt, hub.key)")
        folder = "."
    certs = (base / folder).resolve()
    files = {n: certs / n for n in ("hub.crt", "hub.key", "ca.crt", "ca.crl")}
    if isinstance(hub.get("certs"), str):
        for name, p in files.items():
            if not p.is_file():
                bad.append(f"[hub] certs: {p} does not exist: make it with `nodectl certs {_maker(name)}`")
    data = hub.get("data_dir", "data/hq")
    if not isinstance(data, str) or not data:
        bad.append(f"[hub] data_dir must be a folder name, not {data!r}")
        data = "data/hq"
    nodes = hub.get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        bad.append("[hub] nodes must be a list of node ids, like [\"sz-futian-01\"]")
        nodes = []
    for n in nodes:
        if not NODE_ID_RE.fullmatch(n):
            bad.append(f"[hub] nodes: {n[:70]!r} is not a node id (letters, digits, '.', '_', '-'; at most 64)")
    if len(set(nodes)) != len(nodes):
        bad.append("[hub] nodes: a node id is listed twice")
    routing, priorities = queue_config.check(raw.get("queue", {}), bad)
    if bad:
        raise HubConfigError(path, bad)
    return HubConfig(path, port, (base / data).resolve(), files["hub.crt"], files["hub.key"], files["ca.crt"],
                     files["ca.crl"], float(hb), tuple(nodes), routing, priorities, console)


def _maker(name: str) -> str:
    return {"hub.crt": "hub", "hub.key": "hub"}.get(name, "ca")
