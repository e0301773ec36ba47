"""The line card's serial link on the host: pyserial transport, the wire format from
``firmware.card.wire`` (nothing above this package sees it), an asyncio protocol layer with a typed
API (hook, audio, redundancy, counters, events), frame reassembly and the link budget."""

from .budget import copies_for
from .link import MAX_PULSE_DIGITS, CommandError, HostCounters, LineCardLink, LinkDown, LinkListener
from .messages import CardEvent, CardStats, ChannelCounters, EventKind, Hello, Led, LinkCounters, Status
from .reassembly import Arrival, Reassembler, ReassemblyCounters, wait_for_copies
from .transport import SerialTransport, TransportError

__all__ = ["MAX_PULSE_DIGITS", "Arrival", "CardEvent", "CardStats", "ChannelCounters", "CommandError", "EventKind",
           "Hello", "HostCounters", "Led", "LineCardLink", "LinkCounters", "LinkDown", "LinkListener", "Reassembler",
           "ReassemblyCounters", "SerialTransport", "Status", "TransportError", "copies_for", "wait_for_copies"]
