"""Entry point: ``python bench/run.py [--quick | --full] [--json PATH] ...`` from the repo root.

Run with the project's venv. Needs Debian's nginx and wrk:
``apt-get install -y nginx-light wrk`` (or ``nginx wrk``). See ``python bench/run.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make ``import bench`` work from any working directory.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._main import main

if __name__ == "__main__":
    sys.exit(main())
