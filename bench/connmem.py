"""What a connection holds, and what a burst costs another client.

    .venv/bin/python bench/connmem.py [--proxy-cmd CMD] [--nginx] [--reps 3] [--json PATH]

Starts an origin nginx (static files) and trioproxy (1 worker; pinned to the second CPU and
this script to the first, when there are two), and measures (`bench/_connmem.py`):

- RSS per idle keep-alive connection (bench/_memory.py; target <= 6 KiB);
- RSS per request parked on a silent origin (bench/_parked.py; a trioproxy whose upstream
  accepts and never answers; target <= 12 KiB);
- the 500-burst (bench/_burst.py): 500 connections each send one request at once, and
  another client's GET meanwhile waits this much longer than when idle (target <= 60 ms),
  for GETs and for 64 KiB POSTs; the median over ``--reps`` bursts.

``--nginx`` measures nginx as a reverse proxy the same way, for reference. ``--proxy-cmd``
measures another tree: ``env -C OTHER .venv/bin/python -m trioproxy`` (``-m`` imports from
the current directory first). bench/run.py runs the same measures in its memory phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._connmem import ConnMeasures, measure_target, nginx_starter, trioproxy_starter
from bench._procs import ProcessRegistry
from bench._targets import TargetError, default_trioproxy_cmd, start_origin


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--proxy-cmd", help="command that starts trioproxy (default: this tree's)")
    p.add_argument("--nginx", action="store_true", help="also measure nginx, for reference")
    p.add_argument("--connections", type=int, default=1000, help="idle connections (0: skip)")
    p.add_argument("--parked", type=int, default=500, help="parked requests (0: skip)")
    p.add_argument("--burst", type=int, default=500, help="burst size (0: skip)")
    p.add_argument("--reps", type=int, default=3, help="bursts of each kind")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    cmd = shlex.split(args.proxy_cmd) if args.proxy_cmd else default_trioproxy_cmd()
    cpus = sorted(os.sched_getaffinity(0))
    load, proxy = (str(cpus[0]), str(cpus[1])) if len(cpus) >= 2 else (None, None)
    if load is not None:
        os.sched_setaffinity(0, {int(load)})
    reg = ProcessRegistry()
    results: list[ConnMeasures] = []
    try:
        with tempfile.TemporaryDirectory(prefix="connmem-") as tmp:
            workdir = Path(tmp)
            origin = start_origin(reg, workdir, load)
            kinds = [("trioproxy", trioproxy_starter(cmd, workdir, proxy))]
            if args.nginx:
                kinds.append(("nginx", nginx_starter(workdir, proxy)))
            for name, start in kinds:
                results.append(
                    measure_target(
                        reg,
                        origin.port,
                        name,
                        start,
                        connections=args.connections,
                        parked=args.parked,
                        burst=args.burst,
                        reps=args.reps,
                    )
                )
    except TargetError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        reg.stop_all()
    print()
    for m in results:
        print(*m.lines(), sep="\n")
        print(*(f"{m.target}: PROBLEM: {p}" for p in m.problems), sep="\n")
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in results], indent=1))
    return 1 if any(m.problems for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
