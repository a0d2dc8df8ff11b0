"""trioproxy's benchmark: trioproxy against direct-to-origin and nginx, on loopback only.

Run ``python bench/run.py`` from the repository root (``--quick`` for the CI smoke run,
``--full`` for the issue's exact loads). The modules:

- ``run``      the entry point (a path shim around ``_main.main``)
- ``_main``    the command line and the order of the phases
- ``_procs``   starting, pinning and always stopping processes; /proc readers (CPU, RSS)
- ``_http``    a tiny blocking HTTP/1.1 client (readiness, body checks, idle connections)
- ``nginx``    the nginx origin and reverse-proxy configuration templates
- ``_targets`` starting the targets under test (direct, nginx, trioproxy, trioproxy -w2)
- ``_wrk``     running wrk with a Lua reporter and parsing what it says
- ``_memory``  RSS per idle keep-alive connection, and RSS growth over a long run
- ``_report``  medians, spreads, ratios, warnings, the table and the JSON file
"""
