"""What every benchmark result records about its run: the machine and the command (for docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def run_info() -> dict[str, str]:
    """``{"machine": "host · x86_64 · 2 CPUs · Python 3.11.7", "command": "benchmarks/x.py --n 10"}``."""
    return {
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
