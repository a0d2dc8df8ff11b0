"""nginx configurations: the static origin and the reference reverse proxy.

Both run in the foreground as one single process (``daemon off; master_process off;``), so
the pid the benchmark starts is the process that serves (with several workers, the master
stays in the foreground and its workers are its children); the error log goes to stderr, the
pid file and every temp path into the run's temp dir, nothing under /var.

The origin serves fixed 1 KiB and 64 KiB bodies from files with ``access_log off`` and an
open-file cache: it must never be the bottleneck.

The reference proxy is configured as a CDN's nginx is, with upstream keep-alive
(``proxy_http_version 1.1; keepalive 32; proxy_set_header Connection "";``) and one worker.
To be fair to trioproxy, which writes one JSON access-log line per request to stdout, nginx
writes one JSON line per request to ``/dev/stdout``; the benchmark points both processes'
stdout at /dev/null, so both pay the formatting and one write(2) per request.
"""

from __future__ import annotations

import shutil
from pathlib import Path

BODY_SIZES: dict[str, int] = {"1k": 1024, "64k": 65536}
INSTALL_HINT = "apt-get install -y nginx-light wrk   (or: apt-get install -y nginx wrk)"


def body_path(name: str) -> str:
    return f"/{name}.bin"


def body_bytes(size: int) -> bytes:
    """A fixed, non-repeating-looking body (so a proxy cannot get away with a wrong slice)."""
    pattern = bytes(range(33, 127))  # printable ASCII
    return (pattern * (size // len(pattern) + 1))[:size]


def write_bodies(www: Path) -> dict[str, bytes]:
    www.mkdir(parents=True, exist_ok=True)
    bodies: dict[str, bytes] = {}
    for name, size in BODY_SIZES.items():
        data = body_bytes(size)
        (www / f"{name}.bin").write_bytes(data)
        bodies[body_path(name)] = data
    return bodies


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"  # a PATH without sbin
    return found


def argv(nginx: str, prefix: Path, conf: Path) -> list[str]:
    # -e stderr: the error log goes to stderr even before the config is read.
    return [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"]


def _main_context(prefix: Path, workers: str = "1") -> str:
    # Several workers need the master process; it stays in the foreground (daemon off).
    master = "off" if workers == "1" else "on"
    return f"""
daemon off;
master_process {master};
worker_processes {workers};
worker_rlimit_nofile 16384;
error_log stderr warn;
pid {prefix}/nginx.pid;

events {{
    worker_connections 8192;
    use epoll;
}}
"""


def _http_common(prefix: Path) -> str:
    return f"""
    default_type application/octet-stream;
    types {{ }}
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    tcp_nodelay on;
    keepalive_timeout 75s;
    # nginx 1.19.10+ closes a keep-alive connection after 1000 requests by default; wrk would
    # then reconnect mid-run. Neither trioproxy nor the test wants that cost measured.
    keepalive_requests 100000000;
"""


def origin_conf(prefix: Path, port: int) -> str:
    return f"""{_main_context(prefix)}
http {{{_http_common(prefix)}
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=64 inactive=600s;
    open_file_cache_valid 600s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {prefix}/www;
        location / {{ }}
    }}
}}
"""


# The fields of trioproxy's default JSON access-log line that nginx has a variable for.
_LOG_FORMAT = (
    '{"time":"$time_iso8601","time_taken_ms":"$request_time","request":"$request",'
    '"method":"$request_method","path":"$uri","status":$status,"bytes":$bytes_sent,'
    '"response_body_bytes":$body_bytes_sent,"content_type":"$sent_http_content_type",'
    '"hostname":"$host","referrer":"$http_referer","useragent":"$http_user_agent",'
    '"http_x_forwarded_proto":"$http_x_forwarded_proto","remote_addr":"$remote_addr",'
    '"x_forwarded_for":"$http_x_forwarded_for","upstream_status":"$upstream_status",'
    '"upstream_addr":"$upstream_addr","upstream_time_ms":"$upstream_response_time",'
    '"request_id":"$request_id"}'
)


def proxy_conf(prefix: Path, port: int, upstream_port: int, workers: str = "1") -> str:
    """The reference proxy; ``workers`` is nginx's ``worker_processes`` ("1", "2", "auto")."""
    return f"""{_main_context(prefix, workers)}
http {{{_http_common(prefix)}
    log_format benchjson escape=json '{_LOG_FORMAT}';
    access_log /dev/stdout benchjson;
    upstream origin {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
        keepalive_requests 100000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # Buffer in memory only: a 64 KiB body must not be spooled to a temp file.
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""
