#!/bin/sh
# Entry point of the Redis stand-in (deploy/offline/redis.Dockerfile), as the official image's:
# a server in a container is reached over the container network, so protected mode (loopback
# only while no password is set) is turned off; the network is what keeps others out.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
