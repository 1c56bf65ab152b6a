"""Where a cold ``rnnkit demo`` spends its compile time: the demo in this process with an empty numba cache (a
fresh ``NUMBA_CACHE_DIR``; the source's ``__pycache__`` is not touched), then each outermost compile (numba's
``numba:compile`` events) with its start, its seconds including the functions it compiled on the way, and the
total time in LLVM.  usage: PYTHONPATH=<src> python benchmarks/cold_compile.py [DEMO_SECONDS] [MIN_SECONDS]
(defaults 1 and 0.1; issue 19, session 14)."""
import os
import sys
import tempfile
import time

os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnkit-cold-")
from numba.core import event  # noqa: E402  (after the cache folder is set)

compiles, llvm = event.RecordingListener(), event.RecordingListener()
event.register("numba:compile", compiles)
event.register("numba:llvm_lock", llvm)
from rnnkit.cli import main  # noqa: E402

seconds = sys.argv[1] if len(sys.argv) > 1 else "1"
shown = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
t0 = time.time()
try:
    main(["demo", "--time-limit", seconds, "--out", tempfile.mkdtemp(prefix="rnnkit-cold-run-")])
except SystemExit:
    pass
total = time.time() - t0


def outermost(recording):
    """[(name, start, seconds)] of the events not inside another of the same kind."""
    out, stack = [], []
    for ts, ev in recording.buffer:
        if ev.is_start:
            stack.append(ts)
            continue
        start = stack.pop()
        if not stack:
            dispatcher = (ev.data or {}).get("dispatcher")
            out.append((dispatcher.py_func.__qualname__ if dispatcher else "?", start, ts - start))
    return out


print("\n   start  seconds  function (outermost compiles, callees included)")
tops = outermost(compiles)
for name, start, seconds_ in tops:
    if seconds_ >= shown:
        print(f"{start - t0:8.2f} {seconds_:8.2f}  {name}")
print(f"compiling {sum(s for _, _, s in tops):.2f} s of {total:.2f} s in all; "
      f"LLVM {sum(s for _, _, s in outermost(llvm)):.2f} s")
