"""``python -m node_agent [OPTIONS]``: the branch node daemon, the same as ``nodectl run [OPTIONS]``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
