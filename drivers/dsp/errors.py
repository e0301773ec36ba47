"""Errors raised by the DSP layer."""


class SpanDSPError(RuntimeError):
    """spandsp refused a call or is missing; the message says what to do."""
