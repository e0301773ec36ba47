"""Line card firmware (MicroPython) and, later, its image tooling.

Only ``firmware.card`` runs on the card. The host imports ``firmware.card.wire`` so that
there is exactly one definition of the serial wire format.
"""
