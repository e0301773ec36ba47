"""Node <-> HQ link: the protocol, certificates and TLS, the node's uplink, and the HQ hub (``hq``)."""

__version__ = "0.1.0"
