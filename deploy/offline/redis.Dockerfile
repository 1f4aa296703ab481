# Stand-in for the redis image docker-compose.yml pins: Debian's redis-server, run as the
# redis user in /data, with the official image's entry point. Built by deploy/offline/images.sh.
# hadolint global ignore=DL3006,DL3008
ARG BASE
FROM ${BASE}
# The official image's user and group ids (999), made before the package would pick others.
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
USER 999:999
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
