"""The pure core: HTTP framing and header rules, rules, rate-limit buckets, access-log records.

Standard library only: never trio, never h11 (tests/unit/test_layers.py checks it).
"""
