"""The branch node daemon. At this stage: a minimal loop that answers calls on every line,
greets the caller, and reports caller ID and the digits it hears."""
