#!/usr/bin/env bash
# Installs everything forensic-vsr needs on a fresh Debian/Ubuntu machine: system tools
# (ffmpeg for cross-checks, exiftool, poppler-utils for rendering reports, chromium for the review page test), a virtual
# environment with the CPU build of torch, and the project itself with its test and scale extras.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
command -v chromium >/dev/null || need+=(chromium)  # the review page's browser test (Playwright drives it)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# torch first, pinned: a bare range would resolve to a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
# the scale extra (ray, for --ray and tests/test_ray.py) where a wheel exists for this machine; without it those tests skip, saying why
if ! scale_log=$("$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[scale]' 2>&1); then
  echo "$scale_log" | grep -v '^WARNING: Location' | tail -3
  echo "setup: the scale extra (ray) could not be installed: fvsr enhance --ray and tests/test_ray.py are unavailable"
fi
"$VENV/bin/python" -c "import torch, av, cv2, forensic_vsr; print('setup: ok (torch', torch.__version__ + ', PyAV', av.__version__ + ')')"
"$VENV/bin/python" scripts/fetch_data.py
