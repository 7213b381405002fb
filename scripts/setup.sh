#!/usr/bin/env bash
# Set up what media_server needs on Debian (bookworm, Python 3.11).
#   scripts/setup.sh          the gateway: a virtual environment in .venv with the package
#   scripts/setup.sh --test   also the test tools and the Debian packages the tests use:
#                             GStreamer's RTSP server (a real camera stand-in), Chromium
#                             and Redis (for the cluster tests)
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
WITH_TESTS=0
[[ "${1:-}" == "--test" ]] && WITH_TESTS=1

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "setup: installing Debian packages: ${missing[*]}"
  if [[ $apt_updated -eq 0 ]]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Debian's python3 needs python3-venv for `-m venv`; other Pythons bring it along.
if [[ ! -x "$VENV/bin/python" ]]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    apt_install python3-venv
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi

# The fan-out engine's native part is compiled from source: a C compiler and Python's
# headers are all it needs (its libsrtp is pylibsrtp's, which aiortc installs).
apt_install gcc libc6-dev
if ! "$VENV/bin/python" -c 'import os, sysconfig
raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
then
  apt_install python3-dev
fi

if [[ $WITH_TESTS -eq 1 ]]; then
  # The RTSP test server runs on Debian's /usr/bin/python3, for which python3-gi is built.
  apt_install python3 python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 \
    gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools \
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x \
    chromium fonts-dejavu-core
  # promtool (in Debian's prometheus package) checks the /metrics output in a test;
  # the cluster tests run a real Redis (started by the tests, never as a service);
  # iproute2 makes the network namespaces where "never contacted" is checked.
  apt_install prometheus redis-server iproute2
fi

# Reinstall only when the build changed (a test install covers the plain one).
hash=$(cat pyproject.toml setup.py media_server/engine/_fanout.c | sha256sum | cut -c1-16)
if [[ "$(cat "$VENV/.installed-test" 2>/dev/null)" == "$hash" ]] \
  || { [[ $WITH_TESTS -eq 0 ]] && [[ "$(cat "$VENV/.installed" 2>/dev/null)" == "$hash" ]]; }; then
  exit 0
fi
echo "setup: installing Python packages into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if [[ $WITH_TESTS -eq 1 ]]; then
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  echo "$hash" >"$VENV/.installed-test"
else
  "$VENV/bin/python" -m pip install -q -e .
  echo "$hash" >"$VENV/.installed"
fi
