#!/bin/bash
# A/B of one grid point between two checkouts: N alternating process pairs of benchmarks/point_time.py (each side
# first in every other pair), native OpenBLAS kernels; prints both medians (ms), the median of the pairs' B/A and
# their range.   usage: benchmarks/ab_point.sh A_SRC B_SRC N CELL T B I H [inf|nt|fb]   (issue 19, session 16)
set -euo pipefail
A=$1; B=$2; N=$3; shift 3; PY=${PY:-python}; HERE=$(cd "$(dirname "$0")" && pwd)
for r in $(seq "$N"); do
  if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for s in $order; do
    src=$([ "$s" = A ] && echo "$A" || echo "$B")
    echo "$r $s $(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$src" $PY "$HERE/point_time.py" "$@")"
  done
done | $PY -c "
import statistics, sys
d = {}
for line in sys.stdin:
    r, s, v = line.split()
    d.setdefault(int(r), {})[s] = float(v)
rat = [d[r]['B'] / d[r]['A'] for r in sorted(d)]
print('$*', 'A', statistics.median(d[r]['A'] for r in d), 'B', statistics.median(d[r]['B'] for r in d),
      'B/A', round(statistics.median(rat), 3), 'range', round(min(rat), 2), round(max(rat), 2))
"
