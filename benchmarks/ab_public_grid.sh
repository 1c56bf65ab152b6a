#!/bin/bash
# A/B of two checkouts on the public API (works on old commits too): N alternating process pairs of
# benchmarks/public_grid.py (each side first in every other pair), native OpenBLAS kernels; prints the load average, the BLAS kernel and
# a markdown table of B/A medians.   usage: benchmarks/ab_public_grid.sh A_SRC B_SRC [N]
set -euo pipefail
A=$1; B=$2; N=${3:-3}; PY=${PY:-python}; HERE=$(cd "$(dirname "$0")" && pwd); OUT=$(mktemp -d)
uptime; grep -m1 'model name' /proc/cpuinfo
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY -c "import numpy, threadpoolctl; print([(i['internal_api'], i.get('architecture'), i['num_threads']) for i in threadpoolctl.threadpool_info()])"
# A B, B A, A B, ...: the side run second in a pair measured 2-4 % slower on points a change could not touch
# (issue 19, round 6), so each side goes first in half the pairs
side() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$1" $PY "$HERE/public_grid.py" > "$2" 2>/dev/null; }
for r in $(seq "$N"); do
  if [ $((r % 2)) = 1 ]; then side "$A" "$OUT/a$r.json"; side "$B" "$OUT/b$r.json"
  else side "$B" "$OUT/b$r.json"; side "$A" "$OUT/a$r.json"; fi
done
uptime
$PY - "$OUT" "$N" <<'PYEOF'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
a = [json.load(open(f"{d}/a{r}.json")) for r in range(1, n + 1)]
b = [json.load(open(f"{d}/b{r}.json")) for r in range(1, n + 1)]
print("| point | A ms | B ms | B/A (median of pairs) | range |\n|---|---|---|---|---|")
for k in a[0]:
    r = [y[k] / x[k] for x, y in zip(a, b)]
    print(f"| {k} | {statistics.median(x[k] for x in a):.1f} | {statistics.median(y[k] for y in b):.1f} | "
          f"{statistics.median(r):.2f} | {min(r):.2f}-{max(r):.2f} |")
PYEOF
