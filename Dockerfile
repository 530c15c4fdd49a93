# renderfarm-exporter: slim image, non-root, statistics mounted read-only.
# Time zone: the image runs in UTC; set royalrender.timezone to the RR server's
# zone (the tzdata dependency brings the zone database). TZ sets the container's
# own zone: the status page's times, and RR's when royalrender.timezone is not
# set; log timestamps are always UTC, whatever TZ says. TZDIR points the C
# library at that same database, so TZ=Area/City works even where the slim
# base image has no /usr/share/zoneinfo.
# Podman/Buildah: build with --format docker, or the HEALTHCHECK is dropped.
#
# Two stages: the builder installs the exporter into a virtualenv with the
# dependencies pinned in constraints.txt (the file CI installs with, too); the
# final image copies only that virtualenv, made without pip, so no pip, pip
# cache, wheel or build tool remains in it.
#   docker build --build-arg SOURCE="$(git remote get-url origin)" -t renderfarm-exporter .

FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY exporter ./exporter
RUN python -m venv --without-pip /opt/renderfarm-exporter \
    && python -m pip --python /opt/renderfarm-exporter/bin/python install --no-cache-dir \
        --disable-pip-version-check -c constraints.txt .

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG SOURCE=""
LABEL org.opencontainers.image.title="renderfarm-exporter" \
      org.opencontainers.image.description="Prometheus exporter for render farm statistics (Royal Render, Rush cpu.acct)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=builder /opt/renderfarm-exporter /opt/renderfarm-exporter
# STATE_DIRECTORY: where checkpoints of what was read are kept (--storage.path defaults to it), so a
# restart reads only new bytes; mount a volume there to keep them across containers.
ENV PATH=/opt/renderfarm-exporter/bin:$PATH \
    TZ=UTC \
    TZDIR=/opt/renderfarm-exporter/lib/python3.11/site-packages/tzdata/zoneinfo \
    STATE_DIRECTORY=/var/lib/renderfarm-exporter
RUN useradd --system --uid 10001 --no-create-home exporter \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/renderfarm-exporter
VOLUME ["/var/lib/renderfarm-exporter"]

USER 10001
EXPOSE 19100
# Python as PID 1 gets SIGTERM from `docker stop`; the exporter handles it.
STOPSIGNAL SIGTERM
# The health check's shell form is deliberate (DL3025 is about the signals
# CMD and ENTRYPOINT receive; a probe needs none).
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:19100/-/healthy', timeout=4).status != 200)"
ENTRYPOINT ["renderfarm-exporter"]
CMD ["--config", "/etc/renderfarm-exporter/config.yml"]
