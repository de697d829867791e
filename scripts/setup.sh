#!/usr/bin/env bash
# setup.sh prepares a Debian 12 machine for Manushya: it installs what is missing and
# starts what is not running. Every step checks first, so running it again is cheap.
#
#   scripts/setup.sh            everything (services, pgvector, database, tools)
#   SKIP_TOOLS=1 scripts/setup.sh   skip the Go tool installs (make does them itself)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- PostgreSQL ------------------------------------------------------------------
pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt_install postgresql postgresql-client
fi
if ! pg_ready; then
  log "starting PostgreSQL"
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
pg_ready || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
PG_MAJOR="$(psql -h 127.0.0.1 -U postgres -Atc 'show server_version_num' | cut -c1-2)"

# --- pgvector (built from Debian's source package: bookworm has no binary one) ---
if [ ! -f "/usr/share/postgresql/$PG_MAJOR/extension/vector.control" ]; then
  log "building pgvector for PostgreSQL $PG_MAJOR from Debian's source package"
  apt_install "postgresql-server-dev-$PG_MAJOR" build-essential dpkg-dev
  # Reuse the mirror this machine already uses, for the trixie suite's sources.
  mirror="$(grep -rhoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
  if [ -z "$mirror" ]; then
    mirror="$(grep -hoE '^deb +(\[[^]]*\] +)?[^ ]+' /etc/apt/sources.list 2>/dev/null | awk '{print $NF}' | grep -v security | head -n1 || true)"
  fi
  [ -n "$mirror" ] || { echo "cannot find a Debian mirror in the apt sources" >&2; exit 1; }
  srcfile=/etc/apt/sources.list.d/manushya-trixie-src.sources
  if [ ! -f "$srcfile" ]; then
    printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" | $SUDO tee "$srcfile" >/dev/null
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  build="$(mktemp -d)"
  (cd "$build" && apt-get source -qq pgvector >/dev/null 2>&1)
  dir="$(find "$build" -maxdepth 1 -type d -name 'pgvector-*' | head -n1)"
  [ -n "$dir" ] || { echo "apt-get source pgvector found nothing" >&2; exit 1; }
  make -s -C "$dir" PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" >/dev/null
  $SUDO make -s -C "$dir" PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" install >/dev/null
  rm -rf "$build"
fi

# --- Redis -----------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 20); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.5; done
fi

# --- NATS with JetStream ---------------------------------------------------------
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_up; then
  if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then apt_install nats-server; fi
  log "starting NATS"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 20); do nats_up && break; sleep 0.5; done
fi

# --- Database, roles and memory sizing -------------------------------------------
"$here/provision-db.sh"

log "ready: PostgreSQL $PG_MAJOR with pgvector, Redis, NATS"
