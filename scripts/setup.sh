#!/usr/bin/env bash
# One-time, idempotent set-up of a Debian 12 machine for building, testing and benchmarking junction.
#
#   scripts/setup.sh
#
# - Debian packages: GStreamer 1.22 and its plugins, the RTSP server library (tests), OpenCV and clang
#   (geometry), Mosquitto (MQTT tests), Python's venv (reference scripts), systemd-analyze and
#   promtool (checks of the deploy files; the prometheus package's service is not needed), chromium and
#   its chromedriver (the console's browser test, headless), PostgreSQL 15 (the centre ingester's
#   tests start their own server on a temporary directory; the package's own cluster is not needed).
# - ONNX Runtime: the shared library from the PyPI wheel onnxruntime==$ORT_VERSION, copied into
#   .onnxruntime/ (git-ignored); the binary finds it there (`detector.onnxruntime`, README "Models").
#   The libraries of $ORT_OLDEST (the oldest supported) and $ORT_TOO_OLD (refused) go to
#   .onnxruntime/range/ for the range tests.
# - .venv/ (git-ignored): numpy, onnxruntime and onnx for the reference scripts, test fixtures and
#   benchmarks in scripts/; kubernetes-validate for the manifests in deploy/k8s/; selenium for the
#   console's browser test.
#
# Runs as root, or as a user with sudo. Reaches only Debian's apt mirrors and PyPI.
set -euo pipefail

ORT_VERSION=1.32.0
# detect::ORT_SUPPORTED's oldest version, and the release before it (must be refused).
ORT_OLDEST=1.20.1
ORT_TOO_OLD=1.19.2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

APT_PACKAGES=(
  pkg-config build-essential ca-certificates
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  libgstrtspserver-1.0-dev gir1.2-gst-rtsp-server-1.0
  libopencv-dev clang libclang-dev
  mosquitto mosquitto-clients
  python3 python3-venv python3-pip python3-gi util-linux
  systemd prometheus
  chromium chromium-driver fonts-dejavu-core
  postgresql-15 postgresql-client-15
  faketime  # the clock-step test preloads its libfaketime (tests/faults.rs)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages present"
fi

# Rust: the toolchain is not installed here (rustup's own servers are not reachable from every box);
# say what is needed instead of failing later with an obscure resolver error.
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust >= 1.95 (rustup) and re-run" >&2
  exit 1
fi

# Python venv with the pinned ONNX Runtime (its library is the one the Rust binary loads too).
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import onnx, onnxruntime, numpy, sys; sys.exit(onnxruntime.__version__ != '$ORT_VERSION')" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check "onnxruntime==$ORT_VERSION" "numpy<3" "onnx>=1.16,<2"
fi
# The console's browser test: Selenium drives Debian's chromium through Debian's chromedriver.
if ! .venv/bin/python -c "import selenium" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check "selenium==4.51.0"
fi
# The labelling loop's tests: pycocotools (the reference for `junction eval --labels`), Datumaro (the
# import engine CVAT is built on) and Label Studio's converter read what `junction collect` writes.
if ! .venv/bin/python -c "import pycocotools, datumaro, label_studio_converter" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check "pycocotools==2.0.11" "datumaro==1.13.12" \
    "label-studio-converter==0.0.59"
fi
# Deploy checks: Kubernetes manifests against the API schemas bundled in kubernetes-validate.
if ! .venv/bin/python -c "import kubernetes_validate" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check "kubernetes-validate==1.37.0"
fi

lib=$(.venv/bin/python -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.$ORT_VERSION'))")
mkdir -p .onnxruntime
if ! cmp -s "$lib" ".onnxruntime/libonnxruntime.so.$ORT_VERSION"; then
  cp "$lib" ".onnxruntime/libonnxruntime.so.$ORT_VERSION"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" .onnxruntime/libonnxruntime.so
echo "setup: ONNX Runtime $ORT_VERSION at $ROOT/.onnxruntime/libonnxruntime.so.$ORT_VERSION"

# The supported range's oldest release (ORT_OLDEST, JetPack 6's version) and the release just before it,
# for the tests that run junction on the oldest and see the one before refused. From the PyPI CPU wheels.
for v in "$ORT_OLDEST" "$ORT_TOO_OLD"; do
  dest=".onnxruntime/range/libonnxruntime.so.$v"
  [ -f "$dest" ] && continue
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$v"
  mkdir -p .onnxruntime/range
  .venv/bin/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('onnxruntime/capi/libonnxruntime.so.' + sys.argv[3]))" \
    "$(ls "$tmp"/onnxruntime-*.whl)" "$dest" "$v"
  rm -rf "$tmp"
  echo "setup: ONNX Runtime $v (range test) at $ROOT/$dest"
done
echo "setup: done"
