#!/usr/bin/env bash
# Installs everything uwm-franka needs on a fresh Debian/Ubuntu machine (idempotent).
# apt: libusb (pyrealsense2), EGL/Mesa (headless MuJoCo rendering), ffmpeg (video).
# pip: the CPU build of torch 2.13.0 first, so the unpinned resolver never pulls CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="libusb-1.0-0 libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri ffmpeg"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[install] apt packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY=${PYTHON:-python3}
if ! $PY -c "import torch" >/dev/null 2>&1; then
  echo "[install] torch==2.13.0 (CPU)"
  $PY -m pip install -q torch==2.13.0
fi
# Imported from outside the checkout (the checkout itself is on sys.path for `python -c`) and from
# this checkout: an editable install of another clone would leave scripts/ without the packages.
installed_here() {
  local here=$PWD
  (cd / && $PY -c 'import pathlib, sys, uwm_robot, policy_server, robot_client
sys.exit(pathlib.Path(uwm_robot.__file__).resolve().parents[1] != pathlib.Path(sys.argv[1]).resolve())' "$here") >/dev/null 2>&1
}
if ! installed_here || [ pyproject.toml -nt .install-stamp ]; then
  echo "[install] uwm-franka (editable) + dev extras"
  $PY -m pip install -q -e ".[dev]"
  touch .install-stamp
fi
echo "[install] ok"
