#!/usr/bin/env bash
# Installs the Debian packages crewyard's sandbox and container backends use, when missing:
# bubblewrap (bwrap backend), podman + runc (Docker-compatible engine), debootstrap (base image),
# slirp4netns + iproute2 + util-linux (nsenter, unshare): the private network of sandboxes and containers;
# util-linux (prlimit, setpriv) also starts sandboxes without forking the platform;
# gcc: the security tests build a hostile shared library; chromium: the console's browser tests
# (Playwright drives the system's Chromium; its own browser download is not used); Node.js with npm (JavaScript crews) when
# there is none: Debian 12's is Node 18, which builds the Node image of scripts/containers.sh but
# is too old for langgraph-js crews on bwrap/process — install Node 20 or newer where those run.
set -euo pipefail
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null && [ -x "$(command -v runc)" ] || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v slirp4netns >/dev/null || need+=(slirp4netns)
PATH="$PATH:/usr/sbin:/sbin" command -v ip >/dev/null || need+=(iproute2)
{ command -v nsenter && command -v unshare && command -v prlimit && command -v setpriv; } >/dev/null || need+=(util-linux)
command -v cc >/dev/null || need+=(gcc)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "crewyard: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "crewyard: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
