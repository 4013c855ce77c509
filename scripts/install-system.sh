#!/usr/bin/env bash
# Installs the Debian packages crewyard's sandbox and container backends use, when missing:
# bubblewrap (bwrap backend), podman + runc (Docker-compatible engine), debootstrap (base image).
set -euo pipefail
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null && [ -x "$(command -v runc)" ] || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "crewyard: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "crewyard: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
