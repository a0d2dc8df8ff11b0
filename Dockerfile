# trioproxy's image for the Section proxy chain (see ../shared/seed/proxy-contract.md).
#
# Build: the image installs only wheels built on the host, never from an index:
#   scripts/build-wheels                                      # host: needs PyPI or a pip cache
#   DOCKER_BUILDKIT=0 docker build --network none -t trioproxy .
# On a machine with network this is the same two steps (the build needs no network either way):
# the image holds exactly the dependency set the host resolved and tested, the classic builder
# (which this CI has to use) keeps no pip cache between builds, and the host's pip cache does.
#
# Run: `docker run trioproxy` listens on 0.0.0.0:80 as uid 10001 and proxies to next-hop:80. A
# non-root process may bind port 80 because Docker (since 20.10) sets the per-namespace sysctl
# net.ipv4.ip_unprivileged_port_start=0 in every container with its own network namespace,
# `--network none` included. An engine that does not (see that file in /proc/sys inside a
# container) needs `--sysctl net.ipv4.ip_unprivileged_port_start=0`; Kubernetes: a pod
# securityContext.sysctls entry (a "safe" sysctl since 1.22). No file capability on python:
# with CAP_NET_BIND_SERVICE dropped from the bounding set, exec of such a binary fails outright.
#
# Layers: the dependencies' venv (changes only when build/wheelhouse/deps does), then the
# validator, then trioproxy itself (about 300 KiB with its bytecode).

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The venv gets no pip of its own; the base image's pip installs into it (`--python`).
RUN python3 -m venv --without-pip /opt/trioproxy

COPY build/wheelhouse/deps/ /wheels/deps/
RUN python3 -m pip --python /opt/trioproxy/bin/python install --no-cache-dir --no-index \
        --find-links /wheels/deps --requirement /wheels/deps/requirements.txt

# trioproxy alone, into a tree shaped like the venv: the final stage lays it over the venv. The
# dependencies are already in the venv, so pip checks them and installs none.
COPY build/wheelhouse/app/ /wheels/app/
RUN python3 -m pip --python /opt/trioproxy/bin/python install --no-cache-dir --no-index \
        --find-links /wheels/deps --prefix /staging /wheels/app/trioproxy-*.whl


FROM python:3.11-slim-bookworm

# PYTHONUNBUFFERED: whatever Python writes reaches `docker logs` at once (the access log
# already bypasses the buffer with os.write).
# TRIOPROXY_WORKERS=auto: one worker per CPU the pod gives the container (affinity and the
# cgroup cpu.max quota, rounded up); on one CPU a single process, no supervisor.
ENV PATH=/opt/trioproxy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRIOPROXY_WORKERS=auto

# /opt/proxy_config: the platform's read-only configuration directory (empty: defaults apply).
# /usr/local/bin/trioproxy: found on any default PATH, even where this image's ENV is not applied
# (validate.sh's last resort); the script's shebang names the venv's python.
RUN groupadd --gid 10001 trioproxy \
    && useradd --uid 10001 --gid trioproxy --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin trioproxy \
    && mkdir -m 0755 /opt/proxy_config \
    && ln -s /opt/trioproxy/bin/trioproxy /usr/local/bin/trioproxy

COPY --from=build /opt/trioproxy/ /opt/trioproxy/
# The platform's pre-receive check (exit 0 and silent when /opt/proxy_config is valid).
COPY scripts/validate /opt/section/validate.sh
COPY --from=build /staging/ /opt/trioproxy/

USER 10001:10001
EXPOSE 80
STOPSIGNAL SIGTERM
# Exec form: trioproxy is PID 1 and handles SIGTERM itself (drains, then exits 0).
ENTRYPOINT ["/opt/trioproxy/bin/trioproxy"]
