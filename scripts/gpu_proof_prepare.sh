#!/usr/bin/env bash
# Prepares, on the development machine, what `make gpu-proof` needs on a bare GPU machine:
#   .whl/        the wheels its Python lacks (scripts/gpu_wheels.sh without Ray: the proof packs runs
#                as plain processes), ~10 MiB
#   .gpu_proof/qm9.pt.gz   full QM9 (130,831 molecules) as the QM9 cache's storage file, which the
#                benchmark loads as `benchmark.build.data_file` without qm9pack/RDKit; ~38 MiB gzipped
# Both are git-ignored; together with the tree they stay under the device's 64 MiB.
# Builds the QM9 cache first if there is none ($QM9_ROOT or data/qm9; needs qm9pack + RDKit, ~2 min).
#
# Then one device call, carry [".whl", ".gpu_proof"], command:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && gunzip -kf .gpu_proof/qm9.pt.gz && \
#     MTL_PROOF_OUT=$OUT make gpu-proof PY=python3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
rm -rf .whl
NO_RAY=1 scripts/gpu_wheels.sh
mkdir -p .gpu_proof
ROOT=${QM9_ROOT:-data/qm9}
"$PY" - "$ROOT" <<'PYEOF'
import shutil, sys
from pathlib import Path
from mtl.datasets.qm9 import QM9
ds = QM9(root=sys.argv[1], progress=True)
src = next(Path(ds.processed_dir).glob("qm9pack_pyg_*.pt"))
shutil.copyfile(src, ".gpu_proof/qm9.pt")
print(f"gpu_proof_prepare: {len(ds)} molecules from {src}")
PYEOF
gzip -f .gpu_proof/qm9.pt
du -sh .whl .gpu_proof
size_kib=$(( $(du -sk .whl | cut -f1) + $(du -sk .gpu_proof | cut -f1) ))
if (( size_kib > 58 * 1024 )); then
    echo "gpu_proof_prepare: .whl + .gpu_proof are over 58 MiB; the device takes 64 MiB with the tree" >&2
    exit 1
fi
