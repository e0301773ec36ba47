"""The branch node daemon: calls, the IVR, local authentication, state, and ``nodectl``."""

__version__ = "0.1.0"
