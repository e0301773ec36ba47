"""What the agents' side of the hub (``web.py``) asks of the calls' nodes, and what it is told back.

The agent API never speaks to a node itself: it holds a :class:`CallControl` (the hub, which has
the nodes' WebSockets) and asks it to connect an answered call to the agent's browser, to end it,
and to run a secure capture (verify caller). What the node reports back about a call (it ended,
a capture's progress, its outcome) reaches the agent through :class:`AgentEvents` (the agent API,
which pushes it to the agent's console). Every event is a JSON object with a ``type``
(:data:`EVENT_TYPES`); none ever holds a digit a caller keyed: a capture's progress is a count.
"""

from __future__ import annotations

from typing import Any, Protocol

from .queue import QueuedCall

FIELDS = ("account", "pin")  # what a capture can collect, in the order it asks by default
OUTCOMES = ("verified", "failed", "locked", "cancelled", "unavailable")
EVENT_TYPES = ("offer", "offer_withdrawn", "call_ended", "verify_progress", "verify_result", "status")


class CallGone(LookupError):
    """The call or its node is gone (hung up, node disconnected): ``str()`` says which."""


class CallControl(Protocol):
    async def connect(self, call: QueuedCall, agent: str, offer_sdp: str) -> str:
        """Hand the agent's WebRTC offer to the call's node; return the node's answer SDP.
        Raises CallGone, or TimeoutError when the node does not answer in time."""

    async def hang_up(self, call: QueuedCall, agent: str) -> None:
        """The agent hung up: the node ends the caller's leg too."""

    async def verify(self, call: QueuedCall, agent: str, capture: str, fields: tuple[str, ...]) -> None:
        """Start secure capture ``capture`` (an id the agent API made) of ``fields`` on the call's node."""

    async def verify_cancel(self, call: QueuedCall, capture: str) -> None:
        """The agent cancelled the capture: the node stops it and restores the audio."""

    async def verify_again(self, call: QueuedCall, capture: str, field: str) -> None:
        """The agent asks for one field again."""


class AgentEvents(Protocol):
    def node_ended(self, call_id: str, by: str, reason: str) -> None:
        """The call's node ended the call (``by``: "caller" or "node"): wrap-up starts for its agent."""

    def notify_call(self, call_id: str, event: dict[str, Any]) -> None:
        """Push ``event`` (one of EVENT_TYPES) to the agent talking on ``call_id``, if any."""
