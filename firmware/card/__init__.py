# The line card's firmware package. MicroPython only: see docs/linecard-protocol.md.
