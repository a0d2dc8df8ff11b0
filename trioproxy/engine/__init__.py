"""The engine on trio and h11: peers, exchange, connections, tunnels, pool, server, admin.

May import `core` and `config`, never `app` (tests/unit/test_layers.py checks it). This file
imports nothing, so the supervisor can import a socket helper from here without trio.
"""
