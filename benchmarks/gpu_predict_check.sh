#!/usr/bin/env bash
# GPU checks of memsim's predictors (memsim/predict): CUDA vs CPU speed on the same machine,
# same-seed determinism on CUDA, and a 5-fold CV on CUDA (docs/predictors.md, "On a GPU").
#
#   bash benchmarks/gpu_predict_check.sh DATA OUT
#
# DATA: the real-data folder (its videomem/ is read) and a file DATA/videos.txt of video names
# for `predict apply` (one per line); OUT: where log.txt, pred_cuda.csv and cv_cuda/ go. Run from
# the repository root with a python3 that has torch (CUDA), numpy, pandas, scipy, pyyaml, rich;
# memsim itself is used from the checkout (PYTHONPATH), not installed. The run in docs/predictors.md
# (2026-11-26, commit e4acfb8) had the VideoMem files copied into an ignored folder of the checkout.
set -o pipefail
D=${1:?usage: gpu_predict_check.sh DATA OUT}
OUT=${2:?usage: gpu_predict_check.sh DATA OUT}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MEMSIM_CACHE=/tmp/mcache
L=$OUT/log.txt
run() {
  echo "### $*" | tee -a $L
  local t0; t0=$(date +%s.%N)
  "$@" 2>&1 | tee -a $L
  local rc=${PIPESTATUS[0]}
  echo "rc $rc, wall $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" | tee -a $L
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a $L
python3 -c "import torch,numpy,pandas,scipy,sys;print(sys.version.split()[0],'torch',torch.__version__,'cuda',torch.cuda.is_available(),torch.version.cuda,'numpy',numpy.__version__,'pandas',pandas.__version__)" 2>&1 | tee -a $L
python3 -c "import threadpoolctl, rich, yaml; print('threadpoolctl rich yaml ok')" 2>&1 | tee -a $L
nproc | tee -a $L
# 1. training benchmark, CUDA then CPU, same machine
run python3 benchmarks/bench_predict.py --data $D --device cuda --no-embedding
run python3 benchmarks/bench_predict.py --data $D --device cpu --no-embedding
# 2. determinism on CUDA: train twice with the same seed, apply both, compare bytes
run python3 -m memsim.cli predict train --data $D --device cuda --no-embedding --out /tmp/m1.pt --quiet
run python3 -m memsim.cli predict train --data $D --device cuda --no-embedding --out /tmp/m2.pt --quiet
run python3 -m memsim.cli predict apply --data $D --device cuda --no-embedding --model /tmp/m1.pt --videos $D/videos.txt --out /tmp/p1.csv
run python3 -m memsim.cli predict apply --data $D --device cuda --no-embedding --model /tmp/m2.pt --videos $D/videos.txt --out /tmp/p2.csv
run python3 -m memsim.cli predict apply --data $D --device cpu --no-embedding --model /tmp/m1.pt --videos $D/videos.txt --out /tmp/p1cpu.csv
cmp /tmp/m1.pt /tmp/m2.pt && echo "CUDA model files: identical" | tee -a $L || echo "CUDA model files: DIFFER" | tee -a $L
cmp /tmp/p1.csv /tmp/p2.csv && echo "CUDA predictions: identical" | tee -a $L || echo "CUDA predictions: DIFFER" | tee -a $L
python3 - <<'PY' 2>&1 | tee -a $L
import pandas as pd, numpy as np
a=pd.read_csv('/tmp/p1.csv'); b=pd.read_csv('/tmp/p1cpu.csv')
for c in a.columns[1:]:
    print(f"{c}: CUDA-trained model applied on CUDA vs on CPU: max |diff| {np.abs(a[c]-b[c]).max():.2e}, Spearman {a[c].corr(b[c], method='spearman'):.6f}")
PY
cp /tmp/p1.csv $OUT/pred_cuda.csv
# 3. 5-fold CV on CUDA (the docs' CPU CV is the comparison)
run timeout 300 python3 -m memsim.cli predict cv --data $D --device cuda --no-embedding --out $OUT/cv_cuda --quiet
echo done | tee -a $L
