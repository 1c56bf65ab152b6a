"""Run one fuzz harness with atheris (coverage-guided, libFuzzer):

    python fuzz/run.py NAME [libFuzzer flags]          e.g. -max_total_time=10, -runs=1000000

NAME is a key of fuzz/targets.py's TARGETS.  rnnkit's modules are instrumented for coverage; the
seeds in fuzz/corpus/NAME are read (never written: new inputs go to a temporary directory, or to
the first corpus directory given on the command line).  A crash (anything but rnnkit's UserError)
is written by libFuzzer as crash-<sha1>; save it under fuzz/regressions/NAME/ and
tests/io/test_fuzz.py replays it.  ``python fuzz/run.py --list`` prints the names.
"""
from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from targets import TARGETS, run_one  # noqa: E402


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("harnesses: " + " ".join(TARGETS))
        return
    name, flags = argv[0], argv[1:]
    if name not in TARGETS:
        sys.exit(f"fuzz/run.py: unknown harness {name!r}; expected one of {', '.join(TARGETS)}")
    import atheris

    # numba compiles rnnkit.kernels and the loops of rnnkit.engine: instrumented bytecode breaks it
    with atheris.instrument_imports(include=["rnnkit"], exclude=["rnnkit.kernels", "rnnkit.engine"]):
        import rnnkit.data.audio  # noqa: F401  (the readers' modules, instrumented)
        import rnnkit.data.classify  # noqa: F401
        import rnnkit.data.documents  # noqa: F401
        import rnnkit.data.manifest  # noqa: F401
        import rnnkit.data.pairs  # noqa: F401
        import rnnkit.data.series  # noqa: F401
        import rnnkit.data.text  # noqa: F401
        import rnnkit.io.checkpoint  # noqa: F401
        import rnnkit.io.checkpoint_checks  # noqa: F401
        import rnnkit.io.onnx_import  # noqa: F401
        import rnnkit.sweep.spec  # noqa: F401
        import rnnkit.tasks.charlm  # noqa: F401
        import rnnkit.train.guard  # noqa: F401
        import rnnkit.train.log  # noqa: F401
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = tempfile.mkdtemp(prefix=f"rnnkit-fuzz-{name}-", dir=shm)
    corpus_dirs = [a for a in flags if not a.startswith("-")]
    if not corpus_dirs:  # new inputs to a scratch directory, the committed seeds read only
        flags = [tempfile.mkdtemp(prefix="corpus-", dir=work), os.path.join(HERE, "corpus", name)] + flags

    def one_input(data: bytes) -> None:
        run_one(name, data, work)

    atheris.Setup([sys.argv[0]] + flags, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
