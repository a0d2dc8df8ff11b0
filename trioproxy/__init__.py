"""trioproxy: an HTTP/1.1 reverse proxy on Trio and h11."""

__version__ = "0.1.0"
