#!/bin/sh
# Compare rnnkit's asv benchmarks between two commits, interleaved: BASE HEAD BASE HEAD ... in separate
# processes (PAIRS rounds), samples appended per commit, then `asv compare` prints each benchmark's ratio
# HEAD/BASE and flags the ones beyond FACTOR.  Wall time, the default thread settings, with
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for the runs (native kernels; the kernel is printed).
#
#   benchmarks/asv_compare.sh [-n PAIRS] [-b REGEX] [-f FACTOR] BASE [HEAD]     (from the repository root)
#   e.g. benchmarks/asv_compare.sh -n 5 main HEAD;  -b 'Grid.*lstm' for a subset
#
# Each commit is checked out once into runs/asv/src-<hash> (a detached git worktree) and imported from
# there (PYTHONPATH); the environment is the Python running asv ("existing": numpy, numba, scipy,
# threadpoolctl installed).  Results in runs/asv/results, never in the source tree.
set -eu
PAIRS=5 REGEX=. FACTOR=1.05
while getopts n:b:f: opt; do
    case $opt in n) PAIRS=$OPTARG ;; b) REGEX=$OPTARG ;; f) FACTOR=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-n PAIRS] [-b REGEX] [-f FACTOR] BASE [HEAD]" >&2; exit 2; }
ROOT=$(git rev-parse --show-toplevel)
CONF=$ROOT/benchmarks/asv.conf.json
PY=${PYTHON:-python}
BASE=$(git rev-parse "$1") HEAD=$(git rev-parse "${2:-HEAD}")
src() {  # the checkout of commit $1
    d=$ROOT/runs/asv/src-$1
    [ -d "$d" ] || git -C "$ROOT" worktree add -q --detach "$d" "$1"
    echo "$d/src"
}
run() {  # one round of commit $1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$(src "$1")" \
        "$PY" -m asv run --config "$CONF" --python=same --set-commit-hash "$1" --append-samples \
        --attribute rounds=1 -b "$REGEX" --show-stderr >/dev/null
}
"$PY" -m asv machine --config "$CONF" --yes >/dev/null
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$(src "$HEAD")" "$PY" -c \
    "from threadpoolctl import threadpool_info as t; import scipy.linalg, os; print('BLAS:', ', '.join(
    f\"{i['internal_api']} {i['version']} {i.get('architecture')} ({i['num_threads']} threads)\" for i in t()),
    '| cores:', len(os.sched_getaffinity(0)))"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
while [ $i -lt "$PAIRS" ]; do
    run "$BASE"; run "$HEAD"; i=$((i + 1))
    echo "pair $i of $PAIRS done, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" -m asv compare --config "$CONF" --factor "$FACTOR" --split "$BASE" "$HEAD"
