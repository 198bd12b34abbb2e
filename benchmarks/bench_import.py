"""How long `import kbit` takes, measured with `python -X importtime -c "import kbit"`.

Runs the import in fresh interpreters (default 20 runs) and reports the cumulative microseconds
of the top-level ``kbit`` entry (what ``import kbit`` costs on top of the interpreter's start), as
median / min / max, and which modules the import pulled in. For comparison it measures
``import numpy`` the same way, and the cost of the first call (find, probe, choose and load the
library, then quantize 4096 values) in a fresh interpreter.

    python benchmarks/bench_import.py [--runs 20] [--json] [--python PATH]

``--python`` times another interpreter (e.g. a virtual environment with the built wheel
installed); otherwise this one, where KBIT_LIBRARY_DIR must point at a built library for the
first-call figure when kbit is imported from the source tree.
Not a test: figures go to docs/kbit-runtime.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from wheelmatrix._proc import run


def importtime(python: str, module: str) -> tuple[int, list[str]]:
    """Cumulative µs of ``module``'s top-level entry, and every module imported."""
    out = run([python, "-X", "importtime", "-c", f"import {module}"]).output
    cumulative = None
    modules = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, _self_us, cum_us, name = (part.strip() for part in line.replace(":", "|", 1).split("|"))
        modules.append(name)
        if name == module:
            cumulative = int(cum_us)
    if cumulative is None:
        raise SystemExit(f"no importtime line for {module}:\n{out}")
    return cumulative, modules


FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy, kbit
x = numpy.linspace(-1, 1, 4096, dtype=numpy.float32)
t1 = time.perf_counter()
kbit.quantize_blockwise(x)
t2 = time.perf_counter()
kbit.quantize_blockwise(x)
t3 = time.perf_counter()
print((t2 - t1) * 1e6, (t3 - t2) * 1e6)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to time")
    args = parser.parse_args()
    version = run([args.python, "-c", "import platform; print(platform.python_version())"])
    results: dict[str, object] = {"python": version.output.strip(), "executable": args.python, "runs": args.runs}
    for module in ("kbit", "numpy"):
        times = []
        modules: list[str] = []
        for _ in range(args.runs):
            us, modules = importtime(args.python, module)
            times.append(us)
        results[module] = {
            "median_us": statistics.median(times),
            "min_us": min(times),
            "max_us": max(times),
            "modules": [m.strip() for m in modules if m.strip().split(".")[0] == module]
            if module == "kbit"
            else len(modules),
            "pulls_in_numpy": any(m.strip() == "numpy" for m in modules),
        }
    first = []
    for _ in range(min(args.runs, 5)):
        call_us, again_us = map(float, run([args.python, "-c", FIRST_CALL]).output.split())
        first.append((call_us, again_us))
    results["first_call_us"] = statistics.median(f[0] for f in first)
    results["second_call_us"] = statistics.median(f[1] for f in first)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    k, n = results["kbit"], results["numpy"]
    assert isinstance(k, dict) and isinstance(n, dict)
    print(f"python {results['python']} ({args.python}), {args.runs} fresh interpreters each")
    print(
        f"import kbit : median {k['median_us']} us (min {k['min_us']}, max {k['max_us']}); "
        f"modules: {', '.join(k['modules'])}; numpy imported: {k['pulls_in_numpy']}"
    )
    print(f"import numpy: median {n['median_us']} us (min {n['min_us']}, max {n['max_us']})")
    print(
        f"first quantize_blockwise call (find + probe + select + load + 4096 values): "
        f"median {results['first_call_us']:.0f} us; second call {results['second_call_us']:.0f} us"
    )


if __name__ == "__main__":
    main()
