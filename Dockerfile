# syntax=docker/dockerfile:1
# One image, both programs:
#   collector (default):  docker run -p 8000:8000 -e APIWARD_INGEST_TOKENS=... apiward
#   sensor:               docker run -e APIWARD_HEALTH_PORT=9090 apiward apiward-sensor --listen 0.0.0.0:8080 \
#                             --admin-listen 0.0.0.0:9090 --upstream http://app:9000 --collector http://collector:8000
# Runs as a non-root user and with a read-only root filesystem: everything it writes (SQLite database,
# sensor spool and keys) goes to /var/lib/apiward, which should be a volume (or a tmpfs).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The build stage needs a C compiler and the Python headers for the compiled analysis (mypyc): the
# full image of the same Python has both; the runtime stage stays slim. Both put Python in /usr/local,
# so the virtualenv moves between them unchanged.
ARG BUILD_IMAGE=python:3.11-bookworm

# --- build: compile the analysis, install the wheel and its dependencies into a virtualenv --------
FROM ${BUILD_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/apiward && python -m venv /opt/build
# The build context: metadata, the build script and the four packages (.dockerignore keeps the rest out).
COPY pyproject.toml setup.py README.md ./
COPY apiward/ apiward/
COPY sensor/ sensor/
COPY collector/ collector/
COPY policies/ policies/
# APIWARD_COMPILE=1: the sensor's analysis modules become mypyc extensions (setup.py), about twice
# as fast per exchange. pip compiles .pyc files at install time, so the read-only runtime never
# needs to write them. The last line fails the build if the image would run the analysis interpreted.
# The build tools live in their own virtualenv (mypyc type-checks the program against the runtime
# dependencies before it compiles): mypy builds the image, it does not ship in it.
RUN /opt/build/bin/pip install --no-cache-dir '.[compile]' \
    && APIWARD_COMPILE=1 /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels . \
    && /opt/apiward/bin/pip install --no-cache-dir --compile /wheels/apiward-*.whl \
    && /opt/apiward/bin/apiward --help > /dev/null \
    && /opt/apiward/bin/apiward-sensor --version \
    && /opt/apiward/bin/python -c "import sys, sensor; sys.exit(not sensor.analysis_compiled())"

# --- runtime ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="apiward" \
      org.opencontainers.image.description="API security sensor and collector" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/apiward/apiward"
# A fixed numeric uid/gid: Kubernetes runAsNonRoot can only verify numeric users.
RUN groupadd --system --gid 10001 apiward \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/apiward --no-create-home \
       --shell /usr/sbin/nologin apiward \
    && mkdir -p /var/lib/apiward \
    && chown 10001:10001 /var/lib/apiward
COPY --from=build /opt/apiward /opt/apiward
ENV PATH=/opt/apiward/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APIWARD_DATABASE=sqlite:////var/lib/apiward/apiward.db \
    APIWARD_STATE_DIR=/var/lib/apiward/sensor \
    APIWARD_HEALTH_PORT=8000
WORKDIR /var/lib/apiward
VOLUME ["/var/lib/apiward"]
USER 10001:10001
# 8000 collector API and dashboard; 8080 sensor (inline proxy or mirror); 9090 sensor admin
EXPOSE 8000 8080 9090
# No curl in slim images: the interpreter is the probe. APIWARD_HEALTH_PORT is the collector's port
# (8000) or, for a sensor, its --admin-listen port; both answer GET /healthz without a token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('APIWARD_HEALTH_PORT', '8000'), timeout=4)"]
CMD ["apiward", "serve", "--listen", "0.0.0.0:8000"]
