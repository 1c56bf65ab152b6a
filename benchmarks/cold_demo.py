"""A cold ``rnnkit demo`` timed as a user on a fresh clone sees it: a copy of the source without any
``__pycache__`` (so nothing is in numba's disk cache), ``rnnkit demo --time-limit 20`` in its own process, and the
seconds from the start at which the step-0 evaluation and the first training step (the progress bar's "1/")
appear.  usage: python benchmarks/cold_demo.py SRC [RUNS]  (SRC: a checkout's src/; issue 19, session 14)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

src, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
for run in range(runs):
    work = tempfile.mkdtemp(prefix="rnnkit-cold-demo-")
    shutil.copytree(src, os.path.join(work, "src"), ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=os.path.join(work, "src"))
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "rnnkit", "demo", "--time-limit", "20", "--out",
                          os.path.join(work, "run")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         text=True, bufsize=1)
    seen, line = {}, ""
    while ch := p.stdout.read(1):
        line += ch
        if ch in "\r\n":
            text, line = line.strip(), ""
            if text.startswith("--- step 0") and "step 0" not in seen:
                seen["step 0"] = time.perf_counter() - t0
            elif " 1/" in text[:20] and "step 1" not in seen:
                seen["step 1"] = time.perf_counter() - t0
    p.wait()
    print(f"run {run + 1}: step-0 evaluation at {seen.get('step 0', float('nan')):.1f} s, first training step done "
          f"at {seen.get('step 1', float('nan')):.1f} s, exit {p.returncode}, {time.perf_counter() - t0:.1f} s in all")
    shutil.rmtree(work, ignore_errors=True)
