"""trioproxy's benchmark: trioproxy against direct, nginx, a baseline forwarder and peers.

Run ``python bench/run.py`` from the repository root (``--quick`` for the CI smoke run,
``--full`` for the full loads). The modules:

- ``run``      the entry point (a path shim around ``_main.main``)
- ``_main``    the command line and the order of the phases
- ``_procs``   starting, pinning and always stopping processes; /proc readers (CPU, RSS)
- ``_http``    a tiny blocking HTTP/1.1 client (readiness, body checks, idle connections)
- ``nginx``    the nginx origin and reverse-proxy configuration templates
- ``_targets`` starting the targets under test (direct, nginx, baseline, trioproxy per parser,
               the multi-worker rows, the peers)
- ``baseline`` the featureless trio+h11 forwarder trioproxy is measured against
- ``_peers``   finding and starting the optional peers (proxy.py, mitmdump)
- ``_goals``   the project's numeric targets judged against a run (pure)
- ``_wrk``     running wrk with a Lua reporter and parsing what it says
- ``_memory``  RSS per idle keep-alive connection, and RSS growth over a long run
- ``_report``  medians, spreads, ratios, warnings, the table and the JSON file
"""
