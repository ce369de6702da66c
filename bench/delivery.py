"""Moved: ``agentchat bench --only delivery`` (src/agentchat/bench/delivery.py).

    .venv/bin/python bench/delivery.py [--quick]

runs that command: the delivery benchmark (an agent on a replica against a bare LISTEN, at
200 msg/s and up a rate ladder) on embedded clusters, each figure beside its floor.
"""

from __future__ import annotations

import sys

from agentchat.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "delivery", *sys.argv[1:]]))
