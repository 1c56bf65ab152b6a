#!/bin/bash
# The main job against PyTorch's same recipe: N alternating runs of `rnnkit train charlm --text TEXT
# --steps STEPS` (default flags otherwise: an evaluation every 200 steps) and benchmarks/torch_charlm.py
# --eval-every 200 (the same evaluations); prints each tokens/s line,
# the load average before and after, and the BLAS kernel.   usage: main_job_vs_torch.sh TEXT [N] [STEPS]
# (PYTHONPATH picks the rnnkit checkout; PY the interpreter)
set -euo pipefail
TEXT=$1; N=${2:-5}; STEPS=${3:-150}; PY=${PY:-python}; HERE=$(cd "$(dirname "$0")" && pwd)
uptime; grep -m1 'model name' /proc/cpuinfo
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY -c "import numpy, threadpoolctl; print([(i['internal_api'], i.get('architecture'), i['num_threads']) for i in threadpoolctl.threadpool_info()])"
for i in $(seq "$N"); do
  d=$(mktemp -d)
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY -m rnnkit train charlm --text "$TEXT" --steps "$STEPS" --no-progress \
    --out "$d/run" 2>&1 | grep tokens/s | sed 's/^/rnnkit: /'
  rm -rf "$d"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY "$HERE/torch_charlm.py" --text "$TEXT" --steps "$STEPS" \
    --eval-every 200 2>&1 | grep tokens/s | sed 's/^/torch:  /'
done
uptime
