"""The line card's serial link: pyserial transport, framing from ``firmware.card.wire``, and
an asyncio protocol layer with acknowledged commands, card events and audio."""

from .link import CommandError, LineCardLink, LinkCounters, LinkDown, LinkListener
from .messages import CardEvent, Hello, Status
from .transport import SerialTransport, TransportError

__all__ = ["CardEvent", "CommandError", "Hello", "LineCardLink", "LinkCounters", "LinkDown", "LinkListener",
           "SerialTransport", "Status", "TransportError"]
