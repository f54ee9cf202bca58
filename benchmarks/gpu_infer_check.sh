#!/usr/bin/env bash
# GPU check of memsim infer (docs/inference.md, "On a GPU"): the CUDA tests, then the one-round
# VideoMem inference trained on CUDA from simulations made elsewhere, for comparison with the
# same command on a CPU (calibration/compare_posteriors.py).
#
#   bash benchmarks/gpu_infer_check.sh DATA SIMS OUT
#
# DATA: the real-data folder (its videomem/ is read). SIMS: a `simulations/` folder of
# `memsim infer protocols/videomem.yaml --simulations 4000` (or of the shipped two-round
# command: its first round is the same), with settings.json and at least streams 0 (4,000
# runs) and 1 (200 held out): 4 MB, so the GPU trains without simulating. OUT: where log.txt,
# posterior.parquet and the run's tables go. Run from the repository root with a python3 that
# has torch (CUDA), sbi and memsim's dependencies; memsim is used from the checkout
# (PYTHONPATH). About 6 minutes on an H200 (training about 4): it fits 15 minutes of GPU time
# with a retry. Then, on the CPU machine, with the same SIMS copied into CPU/simulations:
#
#   memsim infer protocols/videomem.yaml --simulations 4000 --workers 2 --out CPU
#   OMP_NUM_THREADS=1 memsim infer protocols/videomem.yaml --simulations 4000 --workers 2 --out CPU1
#   python calibration/compare_posteriors.py CPU OUT      # the GPU against the CPU
#   python calibration/compare_posteriors.py CPU CPU1     # the yardstick: rounding alone
#
# DEVICE=cpu runs the same steps on a CPU (the script's own smoke test, and a CPU reference);
# LIMIT: seconds the inference may take (default 480, within a 10-minute call with the tests).
set -o pipefail
D=${1:?usage: gpu_infer_check.sh DATA SIMS OUT}
SIMS=${2:?usage: gpu_infer_check.sh DATA SIMS OUT}
OUT=${3:?usage: gpu_infer_check.sh DATA SIMS OUT}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-480}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MEMSIM_DATA=$D
L=$OUT/log.txt
run() {
  echo "### $*" | tee -a "$L"
  local t0; t0=$(date +%s.%N)
  "$@" 2>&1 | tee -a "$L"
  local rc=${PIPESTATUS[0]}
  echo "rc $rc, wall $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" | tee -a "$L"
  return "$rc"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$L" || true
python3 -c "import sys,torch,sbi,numba,numpy;print(sys.version.split()[0],'torch',torch.__version__,'cuda',torch.cuda.is_available(),torch.version.cuda,'sbi',sbi.__version__,'numba',numba.__version__,'numpy',numpy.__version__)" 2>&1 | tee -a "$L"
nproc | tee -a "$L"
# 1. the scaled-down inference and the truncated round on CUDA (they compile numba's cache too)
run timeout 240 python3 -m pytest -q -p no:warnings tests/test_infer.py -k "cuda or logistic" || exit 1
# 2. the one-round inference on $DEVICE from the carried simulations
W=$(mktemp -d)
mkdir -p "$W/simulations" && cp "$SIMS"/settings.json "$SIMS"/0-*.npz "$SIMS"/1-*.npz "$W/simulations/"
run timeout "$LIMIT" python3 -m memsim infer protocols/videomem.yaml --simulations 4000 \
  --workers "$(nproc)" --device "$DEVICE" --no-figures --out "$W"
cp "$W"/posterior.parquet "$W"/inference.json "$W"/posterior.csv "$W"/sbc.csv \
  "$W"/predictive.csv "$W"/report.md "$OUT"/ 2>&1 | tee -a "$L"
echo done | tee -a "$L"
