#!/usr/bin/env bash
# On the GPU machine, from the repository root, with .gpu/libs/<variant>/ holding each library and manifest of
# the Linux cells built here (.gpu/libs/all/ all of them): pytest -m gpu with each CUDA library alone, then
# every library forced with KBIT_CUDA_VERSION against the CPU library's bytes.
export PYTHONUNBUFFERED=1
for v in cuda118 cuda124 cuda130 cuda132; do
  echo "== $v"; KBIT_CUDA_LIBRARY_DIR=.gpu/libs/$v python3 -m pytest -m gpu -q -p no:cacheprovider tests/kbit/test_gpu.py 2>&1 | tail -2
done
PYTHONPATH=src KBIT_LIBRARY_DIR=.gpu/libs/all VERSIONS="cpu 118 124 130 132" python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import gpu_check; exec(gpu_check.KBIT_SAME_BYTES)" > $OUT/same.json
python3 -c "
import json; d = json.load(open('$OUT/same.json'))
for v, r in d.items(): print(v, r['library'], r['digests'])
print('all equal:', len({json.dumps(r['digests'], sort_keys=True) for r in d.values()}) == 1)"
