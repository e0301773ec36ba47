"""The HQ hub: accepts the nodes' mutually authenticated WebSockets, keeps the node registry and
applies each node's outbox exactly once (``python -m central_link.hq``; docs/central-link.md)."""
