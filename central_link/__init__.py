"""Node <-> HQ link (protocol, uplink, HQ hub): built by a later issue."""
