#!/usr/bin/env bash
# Downloads into .whl/ the wheels that the GPU machine's own Python (3.12, PyTorch 2.11 with
# torchvision, numpy, scipy, pandas, torch-geometric, pytest, pyyaml, jinja2, cffi, ...) lacks for
# `make test-gpu`: Hydra + OmegaConf (configs), cvxpy + its solvers (Nash-MTL), qpsolvers +
# quadprog (UPGrad). Not needed there: wandb (the tests run logger=none), rdkit/qm9pack (QM9 runs on
# a fixture file), submitit (launchers), and two of cvxpy's declared dependencies it never imports
# on Nash-MTL's ECOS path: scs (43 MiB wheel) and sparsediffpy (12 MiB) (checked by blocking their
# import: `import cvxpy` and a Nash-MTL solve work without them, as without cffi and joblib).
# Versions are the ones pinned in pyproject.toml or resolved beside them in the development venv.
# Total ~50 MiB with Ray (checked below: fails above 56 MiB; the device takes 64 MiB in all).
#
# Then, on the GPU machine, from the repository root (no index, no dependency resolution):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#   MTL_SMOKE_DEVICE=cuda python3 -m pytest -q -m gpu tests/test_gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
mkdir -p "$DEST"
PY=${PYTHON:-python3}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
COMMON=(download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d "$DEST")

# compiled packages: cp312 manylinux wheels
# (cvxpy imports qdldl at import time and registers clarabel/osqp/highspy when present)
BINARY=(cvxpy==1.9.3 ecos==2.0.14 clarabel==0.11.1 osqp==1.1.3 highspy==1.16.0 qdldl==0.1.9.post1
        quadprog==0.1.14)
# pure Python: any platform
PURE=(hydra-core==1.3.8 omegaconf==2.3.1 qpsolvers==4.13.0)

for spec in "${BINARY[@]}"; do
    "$PY" -m pip "${COMMON[@]}" "${PLATFORMS[@]}" "$spec"
done
for spec in "${PURE[@]}"; do
    "$PY" -m pip "${COMMON[@]}" --platform any "$spec"
done
# antlr4-python3-runtime 4.9.3 (Hydra 1.3 / OmegaConf 2.3 need 4.9.*) is published as an sdist only:
# build its pure-Python wheel locally
"$PY" -m pip wheel --no-deps -w "$DEST" antlr4-python3-runtime==4.9.3

# NO_RAY=1 (scripts/gpu_proof_prepare.sh: the proof packs runs as processes) stops here, without Ray.
if [[ -n "${NO_RAY:-}" ]]; then
    echo "gpu_wheels: $(ls "$DEST" | wc -l) wheels, $(( $(du -sk "$DEST" | cut -f1) / 1024 )) MiB in $DEST (no Ray)"
    exit 0
fi
# launcher=gpus (tests/test_gpu_campaign.py): Ray and its jsonschema dependencies. Ray's wheel is
# 76 MiB; the launcher needs only its core (raylet, GCS, worker), so the wheel is rewritten without
# the Java jars, the dashboard's web client and the libraries (RLlib, Serve, Tune, Train, Data).
"$PY" -m pip "${COMMON[@]}" "${PLATFORMS[@]}" rpds-py==2026.9.1
for spec in jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0; do
    "$PY" -m pip "${COMMON[@]}" --platform any "$spec"
done
RAY_TMP=$(mktemp -d)
"$PY" -m pip "${COMMON[@]/$DEST/$RAY_TMP}" "${PLATFORMS[@]}" ray==2.60.0
"$PY" - "$RAY_TMP"/ray-*.whl "$DEST" <<'PYEOF'
import sys, zipfile
from pathlib import Path
src = Path(sys.argv[1])
drop = ("ray/jars/", "ray/dashboard/client/build/", "ray/rllib/", "ray/serve/", "ray/tune/", "ray/train/",
        "ray/data/", "ray/llm/", "ray/util/dask/")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(Path(sys.argv[2]) / src.name, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if not item.filename.startswith(drop):
            zout.writestr(item, zin.read(item.filename))
PYEOF
rm -rf "$RAY_TMP"

size_kib=$(du -sk "$DEST" | cut -f1)
echo "gpu_wheels: $(ls "$DEST" | wc -l) wheels, $((size_kib / 1024)) MiB in $DEST"
if (( size_kib > 56 * 1024 )); then
    echo "gpu_wheels: $DEST is over 56 MiB; the device machine accepts 64 MiB in all, trim the list" >&2
    exit 1
fi
