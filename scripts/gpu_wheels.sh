#!/usr/bin/env bash
# Downloads into .whl/ the wheels that the GPU machine's own Python (3.12, PyTorch 2.11 with
# torchvision, numpy, scipy, pandas, torch-geometric, pytest, pyyaml, jinja2, cffi, ...) lacks for
# `make test-gpu`: Hydra + OmegaConf (configs), cvxpy + its solvers (Nash-MTL), qpsolvers +
# quadprog (UPGrad). Not needed there: wandb (the tests run logger=none), rdkit/qm9pack (QM9 runs on
# a fixture file), submitit (launchers), and two of cvxpy's declared dependencies it never imports
# on Nash-MTL's ECOS path: scs (43 MiB wheel) and sparsediffpy (12 MiB) (checked by blocking their
# import: `import cvxpy` and a Nash-MTL solve work without them, as without cffi and joblib).
# Versions are the ones pinned in pyproject.toml or resolved beside them in the development venv.
# Total ~12 MiB (checked below: fails above 40 MiB).
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

size_kib=$(du -sk "$DEST" | cut -f1)
echo "gpu_wheels: $(ls "$DEST" | wc -l) wheels, $((size_kib / 1024)) MiB in $DEST"
if (( size_kib > 40 * 1024 )); then
    echo "gpu_wheels: $DEST is over 40 MiB; the device machine accepts 64 MiB in all, trim the list" >&2
    exit 1
fi
