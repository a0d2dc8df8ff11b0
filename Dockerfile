# trioproxy's image for the Section proxy chain (docs/platform-contract.md; building and testing
# it: docs/image.md).
#
# Build, either way:
#   docker build -t trioproxy .                  # a clean clone, network: installs from the index
#   scripts/build-wheels                         # or: wheels made on the host first, then
#   DOCKER_BUILDKIT=0 docker build --network none -t trioproxy .   # a build with no network
# With build/wheelhouse/ present the build installs only from it, never from an index, and
# refuses (one line: run scripts/build-wheels) a wheelhouse built from other sources than the
# context's, so a stale wheelhouse never ships old code. Without it, pip resolves trioproxy's
# runtime dependencies from the index. Only runtime packages are installed: trio, h11,
# prometheus-client and their own dependencies (the parser is h11; see docs/reference/cli.md).
#
# Run: `docker run -p 8080:80 trioproxy` listens on 0.0.0.0:80 as uid 10001 and proxies to
# next-hop:80. A non-root process may bind port 80 because Docker (since 20.10) sets the
# per-namespace sysctl net.ipv4.ip_unprivileged_port_start=0 in every container with its own
# network namespace, `--network none` included. An engine that does not (see that file in
# /proc/sys inside a container) needs `--sysctl net.ipv4.ip_unprivileged_port_start=0`;
# Kubernetes: a pod securityContext.sysctls entry (a "safe" sysctl since 1.22). No file
# capability on python: with CAP_NET_BIND_SERVICE dropped from the bounding set, exec of such a
# binary fails outright.
#
# Layers: the venv with the dependencies (about 6.5 MB), then the validator, then trioproxy
# itself (about 1.2 MB with its bytecode; `docker history` on the built image shows each).

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The venv gets no pip of its own; the base image's pip installs into it (`--python`).
RUN python3 -m venv --without-pip /opt/trioproxy

# The sources, and the wheelhouse when there is one (`build/wheelhouse*` may match nothing; the
# other sources always exist, so the COPY never fails for want of it).
COPY pyproject.toml README.md LICENSE /src/
COPY trioproxy/ /src/trioproxy/
COPY scripts/tree-hash build/wheelhouse* /wheels/

SHELL ["/bin/sh", "-eu", "-c"]
# Dependencies into the venv; from the wheelhouse, trioproxy alone into a tree shaped like the
# venv that the final stage lays over it (from the index, all of it goes into the venv).
RUN if [ -d /wheels/deps ]; then \
        built=$(cat /wheels/app/tree.sha256 2>/dev/null || echo none); \
        here=$(sh /wheels/tree-hash /src); \
        if [ "$built" != "$here" ]; then \
            echo "build/wheelhouse was built from other sources than these: run scripts/build-wheels, then build again" >&2; \
            exit 1; \
        fi; \
        python3 -m pip --python /opt/trioproxy/bin/python install --no-cache-dir --no-index \
            --find-links /wheels/deps --requirement /wheels/deps/requirements.txt; \
        python3 -m pip --python /opt/trioproxy/bin/python install --no-cache-dir --no-index \
            --find-links /wheels/deps --prefix /staging /wheels/app/trioproxy-*.whl; \
    else \
        python3 -m pip --python /opt/trioproxy/bin/python install --no-cache-dir /src \
            || { echo "no build/wheelhouse, and installing from the package index failed: without network, run scripts/build-wheels first" >&2; exit 1; }; \
        mkdir /staging; \
    fi


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
