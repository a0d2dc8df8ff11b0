"""Configuration: the settings, loading and checking trioproxy.toml, the options (no trio, no h11).

May import `trioproxy.core`; tests/unit/test_layers.py checks it.
"""
