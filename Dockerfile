# renderfarm-exporter: slim image, non-root, statistics mounted read-only.
# Time zone: the image runs in UTC; set royalrender.timezone to the RR server's
# zone (the tzdata dependency brings the zone database), and TZ for log readers.
FROM python:3.11-slim

WORKDIR /opt/renderfarm-exporter
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home exporter

USER 10001
EXPOSE 19100
# Python as PID 1 gets SIGTERM from `docker stop`; the exporter handles it.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:19100/-/healthy', timeout=4).status != 200)"
ENTRYPOINT ["renderfarm-exporter"]
CMD ["--config", "/etc/renderfarm-exporter/config.yml"]
