# The gateway, built the way scripts/setup.sh installs it: Debian bookworm, Python 3.11,
# the package and its runtime dependencies in a virtual environment.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The fan-out engine's native part is compiled here: a C compiler is all it needs (it calls
# the libsrtp inside pylibsrtp, which aiortc installs).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
COPY pyproject.toml setup.py README.md ./
COPY media_server ./media_server
RUN /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install . \
 && /opt/venv/bin/python -c "import media_server.engine._fanout"

FROM python:3.11-slim-bookworm
RUN useradd --system --create-home --uid 10001 media \
 && mkdir -p /var/lib/media_server && chown media /var/lib/media_server
COPY --from=build /opt/venv /opt/venv
COPY config /etc/media_server
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    MEDIA_SERVER_REGISTRY__PATH=/var/lib/media_server/registry.sqlite3 \
    MEDIA_SERVER_RECORD__DIRECTORY=/var/lib/media_server/recordings
# Registered streams and recordings survive container restarts when this is a volume.
VOLUME /var/lib/media_server
USER media
EXPOSE 8080
ENTRYPOINT ["media-server"]
CMD ["--config", "/etc/media_server/media_server.yaml", "--host", "0.0.0.0"]
