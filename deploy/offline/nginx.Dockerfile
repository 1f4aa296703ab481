# Stand-in for the nginx image docker-compose.yml pins: Debian's nginx-light and wget (the
# proxy's health check), an nginx user, logs to the container's output, the graceful stop
# signal of the official image. Built by deploy/offline/images.sh.
# hadolint global ignore=DL3006,DL3008
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin nginx \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
