# Stand-in for the python image the Dockerfile pins: Debian's python3 with the official image's
# /usr/local/bin/python, venv and pip. Built by deploy/offline/images.sh.
# hadolint global ignore=DL3006,DL3008
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip-whl \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/python3 /usr/local/bin/python3
ENV LANG=C.UTF-8
CMD ["python3"]
