#!/usr/bin/env bash
# On the lent GPU machine (no package index): join the parts bench/gpu_pack.py made, check their
# hashes, unpack the site folder (and the training photos, when they were packed), let onnxruntime-gpu
# find the CUDA 13 libraries of the machine's own PyTorch, then run
#   bash bench/gpu_device.sh [ARGS]             bench/gpu.py --no-install ARGS (the GPU benchmark)
#   bash bench/gpu_device.sh train det|rec ARGS  wildocr train on the GPU (the photos: $GPU_SITE/data/tune-half)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PARTS=${GPU_PARTS:-.devcarry/gpu}
SITE=${GPU_SITE:-/tmp/wildocr-gpu-site}

DATA="$PARTS-data"
check() { (cd "$1" && sha256sum -c --quiet SHA256SUMS); }
extract() {  # extract PARTS_DIR INTO: join the parts and unpack the tar they make
  mkdir -p "$2"
  cat "$1"/part-* | "$PY" -c "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode='r|*').extractall(sys.argv[1], filter='data')" "$2"
}

# Every part checked before anything is removed or written.
check "$PARTS"
if [ -f "$DATA/SHA256SUMS" ]; then check "$DATA"; fi
rm -rf "$SITE"
extract "$PARTS" "$SITE"
if [ -f "$DATA/SHA256SUMS" ]; then extract "$DATA" "$SITE/data"; fi
export PYTHONPATH="$SITE/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# The nvidia-* wheels of the machine's Python (cuDNN, cuBLAS, the CUDA runtime), where the CUDA
# provider's dlopen finds them.
NVIDIA_LIBS=$("$PY" -c "
import glob, os, site
dirs = {os.path.dirname(p) for d in site.getsitepackages() for p in glob.glob(os.path.join(d, 'nvidia', '**', 'lib*.so*'), recursive=True)}
print(':'.join(sorted(dirs)))")
export LD_LIBRARY_PATH="${NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.__file__, o.get_available_providers())"
export PYTHONUNBUFFERED=1
if [ "${1:-}" = train ]; then
  exec "$PY" -m wildocr.cli "$@"
fi
exec "$PY" bench/gpu.py --no-install "$@"
