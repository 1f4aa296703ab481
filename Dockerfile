# bantin: one image for every role of docker-compose.yml
#   (`bantin ingest|publisher|worker|beat|migrate`, and `bantin up` for a quick look).
#
#   docker build -t bantin:0.1.0 .
#   docker run --rm bantin:0.1.0 --help
#
# The builder stage creates /opt/venv from constraints.txt: every dependency is a binary wheel or
# pure Python (feedgen comes as a source archive only), so no stage needs a compiler; it strips
# the wheels' shared objects of their symbols (binutils, in the builder stage only), and the
# final stage copies only that venv. Bump both FROM lines together: the venv's interpreter is the base image's
# /usr/local/bin/python.
#
# Behind a network that intercepts TLS (a corporate proxy), give pip that network's CA bundle as
# a build secret; it is read only during the RUN that installs and is kept in no layer:
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t bantin:0.1.0 .
# (docker-compose.yml passes BANTIN_BUILD_CA the same way.) Without one, pip uses its own.

FROM python:3.11.15-slim-trixie AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_PREFER_BINARY=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# `strip`, to take the debug symbols out of the wheels' shared objects (MB the image would carry
# for nothing). Not those that auditwheel rewrote with patchelf (the libraries it vendors into
# `*.libs/`, and the modules it gave an RPATH to find them): strip breaks such files. The
# builder stage only: the final image has no binutils. Not pinned to a version: it is the base
# image's own Debian release's, and none of it ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

# The dependencies first, in a layer of their own: rebuilt only when pyproject.toml or
# constraints.txt change, not on every change of the code. pip is pinned as in the Makefile.
# Only [project] dependencies: the embedded servers of `bantin up` (the `embedded` extra) are
# not needed where PostgreSQL and Redis run in containers of their own.
# BANTIN_EXTRAS adds optional features' dependencies: `--build-arg BANTIN_EXTRAS=s3` for the S3
# media store (BANTIN_MEDIA_URL=s3://...).
ARG BANTIN_EXTRAS=
COPY pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && pip install -c constraints.txt "pip==26.3" \
    && python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = os.environ["BANTIN_EXTRAS"].replace(",", " ").split(); print(*p["dependencies"], *(d for e in extras for d in p["optional-dependencies"][e]), sep="\n")' > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && find /opt/venv -type f -name '*.so*' -not -path '*.libs/*' -exec sh -c 'for f; do readelf -d "$f" | grep -qE "RPATH|RUNPATH" || strip --strip-unneeded "$f"; done' strip {} +

# Then bantin itself (the packages that pyproject.toml's packages.find includes).
COPY README.md ./
COPY bantin ./bantin
COPY services ./services
COPY shared ./shared
COPY workers ./workers
# Then pip and setuptools go: the image installs nothing at run time.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && pip install --no-deps -c constraints.txt . \
    && pip check \
    && pip uninstall -y setuptools pip


FROM python:3.11.15-slim-trixie

ARG BANTIN_VERSION=0.1.0
LABEL org.opencontainers.image.title="bantin" \
      org.opencontainers.image.description="bantin news publishing system: ingest API, publisher site, Celery worker and beat in one image" \
      org.opencontainers.image.version="${BANTIN_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.15-slim-trixie"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BANTIN_HOME=/var/lib/bantin \
    BANTIN_MEDIA_DIR=/var/lib/bantin/media

COPY --from=builder /opt/venv /opt/venv
COPY deploy/healthcheck.py /usr/local/bin/bantin-healthcheck

# A user of its own (no login, no password); BANTIN_HOME belongs to it, so a named volume
# mounted on the media folder starts out owned by it. Then a smoke test of the image: every
# role's code imports, the command answers, and the time zone database is there.
RUN groupadd --system --gid 10001 bantin \
    && useradd --system --uid 10001 --gid bantin --home-dir /var/lib/bantin --no-create-home \
       --shell /usr/sbin/nologin bantin \
    && mkdir -p /var/lib/bantin/media/public /var/lib/bantin/run \
    && chown -R bantin:bantin /var/lib/bantin \
    && chmod 0755 /usr/local/bin/bantin-healthcheck \
    && bantin --help > /dev/null \
    && python -c "import services.ingest.app, services.publisher.app, workers.app, workers.publishing, workers.feeds" \
    && python -c "import pyvips; assert pyvips.API_mode, 'libvips did not load'" \
    && python -c "from zoneinfo import ZoneInfo; ZoneInfo('Asia/Ho_Chi_Minh')"

WORKDIR /var/lib/bantin
USER 10001:10001

# publisher 8080, ingest 8081 (both take --port)
EXPOSE 8080 8081

# Every role stops gracefully on SIGTERM: aiohttp finishes in-flight requests, a Celery worker
# finishes its running tasks (warm shutdown), beat saves its schedule.
STOPSIGNAL SIGTERM

# Role-aware (deploy/healthcheck.py): /healthz for ingest and publisher, a Celery ping for a
# worker, nothing to ask for beat and migrate. docker-compose.yml asks for /readyz instead.
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 \
    CMD ["bantin-healthcheck"]

ENTRYPOINT ["bantin"]
CMD ["publisher"]
