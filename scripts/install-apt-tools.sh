#!/usr/bin/env bash
# Install the Debian tools the monitoring checks, HA tests, load tests, browser tests and image
# builds use:
#   prometheus (/usr/bin/prometheus, /usr/bin/promtool), wrk, redis-server (the shared
#   rate limiter's tests start their own on a free port), chromium (the storefront's browser
#   tests, driven by Playwright), and podman with buildah, runc and debootstrap (images built
#   and run without a Docker daemon; see docs/deploy.md), and rabbitmq-server (the events'
#   broker: `make run`/`make test` start a private node of it on free ports when no broker
#   answers on 127.0.0.1:5672, see src/shop/devtools/broker.py).
#
# Idempotent: when every tool is already present it exits at once, without
# touching apt. Otherwise it runs `apt-get update` once and installs only the
# missing packages, with a policy-rc.d that forbids postinst scripts from
# starting daemons (Debian's prometheus package tries to), then stops
# any such daemon that was started anyway. Exits non-zero on any failure.
#
# Usage: sudo scripts/install-apt-tools.sh   (or as root)
set -euo pipefail

# package -> a file the package provides; the file's presence means "installed".
declare -A PROBE=(
  [prometheus]=/usr/bin/promtool
  [wrk]=/usr/bin/wrk
  [redis-server]=/usr/bin/redis-server
  [chromium]=/usr/bin/chromium
  [podman]=/usr/bin/podman
  [buildah]=/usr/bin/buildah
  [runc]=/usr/sbin/runc
  [debootstrap]=/usr/sbin/debootstrap
  [fuse-overlayfs]=/usr/bin/fuse-overlayfs
  [netavark]=/usr/lib/podman/netavark
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [slirp4netns]=/usr/bin/slirp4netns
  [uidmap]=/usr/bin/newuidmap
  [catatonit]=/usr/bin/catatonit
  [rabbitmq-server]=/usr/sbin/rabbitmq-server
)
PACKAGES=(prometheus wrk redis-server chromium podman buildah runc debootstrap
  fuse-overlayfs netavark containernetworking-plugins slirp4netns uidmap catatonit rabbitmq-server)
# Daemons the packages may start, by service name.
DAEMONS=(prometheus prometheus-node-exporter redis-server)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if [[ ! -x "${PROBE[$pkg]}" ]] || ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-apt-tools: ${PACKAGES[*]} already installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-apt-tools: need root to install: ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# A policy-rc.d returning 101 tells invoke-rc.d "action not allowed", so the
# packages' postinst scripts do not start their daemons. Keep any existing
# policy (a container image may ship one) and restore it on exit.
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
if [[ -e "$POLICY" ]]; then
  POLICY_BACKUP=$(mktemp /tmp/policy-rc.d.XXXXXX)
  cp -p "$POLICY" "$POLICY_BACKUP"
fi
restore_policy() {
  if [[ -n "$POLICY_BACKUP" ]]; then
    cp -p "$POLICY_BACKUP" "$POLICY" && rm -f "$POLICY_BACKUP"
  else
    rm -f "$POLICY"
  fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# written by scripts/install-apt-tools.sh for the duration of an install\nexit 101\n' >"$POLICY"
chmod 0755 "$POLICY"

# PIDs of the daemon binaries the packages ship.
daemon_pids() {
  local bin
  local pattern
  for pattern in '^/usr/bin/prometheus( |$)' '^/usr/bin/prometheus-node-exporter( |$)' '^/usr/bin/redis-server'; do
    pgrep -f "$pattern" 2>/dev/null || true
  done | sort -u | tr '\n' ' '
}
before_pids=$(daemon_pids)

echo "install-apt-tools: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}"

# Belt and braces: if a daemon got started anyway (no policy honoured, systemd
# present), stop it so nothing is left listening on 9090/9100/80.
for svc in "${DAEMONS[@]}"; do
  if [[ -n "$before_pids" ]]; then
    break  # something of ours was already running: leave service management alone
  fi
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/$svc ]]; then
    /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
  fi
done
# Daemons started outside an init system: stop only processes of the daemon
# binaries that did not exist before this install (a Prometheus someone runs
# for a test is left alone).
for pid in $(daemon_pids); do
  if [[ " $before_pids " != *" $pid "* ]]; then
    kill "$pid" 2>/dev/null || true
  fi
done

for pkg in "${missing[@]}"; do
  if [[ ! -x "${PROBE[$pkg]}" ]]; then
    echo "install-apt-tools: $pkg installed but ${PROBE[$pkg]} is missing" >&2
    exit 1
  fi
done
echo "install-apt-tools: done ($(promtool --version 2>&1 | head -n1))"
