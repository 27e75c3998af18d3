#!/usr/bin/env bash
# `make gpu-proof` on a lent, bare GPU machine, in one device call (after scripts/gpu_proof_prepare.sh
# here, in the checkout the device tool sends):
#   run(command="bash scripts/gpu_proof_device.sh", carry=[".whl", ".gpu_proof"], timeout_s=600)
# Installs the carried wheels, unpacks full QM9, runs the proof (<= 8 min) and leaves its CSV, its
# report and the log in $OUT (results/bench without a device tool); commit them under results/bench/.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 WANDB_MODE=disabled
gunzip -kf .gpu_proof/qm9.pt.gz || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
DEST=${OUT:-results/bench}
mkdir -p "$DEST"
make gpu-proof PY=python3 MTL_PROOF_OUT="$DEST" 2>&1 | tee "$DEST/gpu_proof_log.txt"
