"""A hardware simulator for the line card: runs the real firmware under CPython.

``simctl card`` serves a simulated card on a TCP port that looks like the card's USB serial
port (``socket://127.0.0.1:PORT``) plus a control port through which scripted callers act on
the simulated PSTN lines (``simctl call``).
"""
