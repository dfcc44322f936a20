#!/usr/bin/env bash
# On the lent GPU machine (no package index): join the parts bench/gpu_pack.py made, check their
# hashes, unpack the site folder, let onnxruntime-gpu find the CUDA 13 libraries of the machine's own
# PyTorch, and run bench/gpu.py --no-install with that site. Arguments go to bench/gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PARTS=${GPU_PARTS:-.devcarry/gpu}
SITE=${GPU_SITE:-/tmp/wildocr-gpu-site}
(cd "$PARTS" && sha256sum -c --quiet SHA256SUMS)
rm -rf "$SITE" && mkdir -p "$SITE"
cat "$PARTS"/part-* | "$PY" -c "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz').extractall('$SITE', filter='data')"
export PYTHONPATH="$SITE/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# The nvidia-* wheels of the machine's Python (cuDNN, cuBLAS, the CUDA runtime), where the CUDA
# provider's dlopen finds them.
NVIDIA_LIBS=$("$PY" -c "
import glob, os, site
dirs = {os.path.dirname(p) for d in site.getsitepackages() for p in glob.glob(os.path.join(d, 'nvidia', '**', 'lib*.so*'), recursive=True)}
print(':'.join(sorted(dirs)))")
export LD_LIBRARY_PATH="${NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.__file__, o.get_available_providers())"
PYTHONUNBUFFERED=1 exec "$PY" bench/gpu.py --no-install "$@"
