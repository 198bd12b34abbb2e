#!/usr/bin/env bash
# On the GPU machine, from the repository root, with .gpu/ carried (kbit wheel built before a kernel change):
# build csrc/ there for sm_90, run pytest -m gpu with it, then time it (after) against the wheel (before).
export PYTHONUNBUFFERED=1
cmake -S . -B /tmp/kb -G Ninja -DKBIT_BACKEND=cuda "-DCMAKE_CUDA_ARCHITECTURES=90-real;90-virtual" -DCMAKE_BUILD_TYPE=Release > $OUT/cmake.log 2>&1 && cmake --build /tmp/kb --parallel 16 >> $OUT/cmake.log 2>&1 || { tail -30 $OUT/cmake.log; exit 3; }
d=$(dirname $(find /tmp/kb -name 'libkbit_cuda*.json' | head -1)); echo LIB=$d
KBIT_CUDA_LIBRARY_DIR=$d python3 -m pytest -m gpu -q -p no:cacheprovider tests/kbit/test_gpu.py 2>&1 | tail -4
PYTHONPATH=src KBIT_LIBRARY_DIR=$d python3 benchmarks/gpu_check.py --only bench --out $OUT/after.json > $OUT/after.log 2>&1
python3 benchmarks/gpu_check.py --only kbit --wheels .gpu --out $OUT/before.json > $OUT/before.log 2>&1
python3 - <<'PY'
import json, os
o = os.environ["OUT"]
a = json.load(open(o + "/after.json"))["kbit_bench"]; b = json.load(open(o + "/before.json"))["kbit_bench"]
print("copy", b and b["copy_gbs"], a and a["copy_gbs"])
for x, y in zip(b["rows"], a["rows"]):
    print(x["n"], x["dtype"], x["format"], x["blocksize"], "deq", x["dequantize_gbs"], "->", y["dequantize_gbs"], "q", x["quantize_gbs"], "->", y["quantize_gbs"])
PY
