"""Record Nash-MTL's solver inputs and outputs on real training steps, for regression tests of
the solver (tests/test_speed.py: a rewritten solver must return the same weights).

    python scripts/record_nash_grams.py --out tests/data/nash_mtl_grams.npz

Trains `synthetic` (3 tasks, loss scales 1e-2 : 1 : 1e2) and `synthetic` with 6 tasks for a few
steps with method=nash_mtl through the trainer and stores, per solve: the Gram matrix G G^T (float64),
the warm-start alpha and the returned alpha, plus the failure count.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "nash_mtl_grams.npz"))
    ap.add_argument("--steps", type=int, default=24)
    args = ap.parse_args(argv)

    from mtl.methods.nash_mtl import NashMTL
    from mtl.run.entry import run

    records = {3: [], 6: []}
    original = NashMTL.solve_weights

    def recording(self, G):
        gtg = (G.detach().double() @ G.detach().double().T).cpu().numpy()
        start = np.array(self.prvs_alpha, dtype=np.float64)
        alpha, info = original(self, G)
        records[self.num_tasks].append((gtg, start, np.array(alpha, dtype=np.float64), info["solver_failures"]))
        return alpha, info

    NashMTL.solve_weights = recording
    for T, scales in ((3, "[0.1,1.0,10.0]"), (6, "[0.1,0.3,1.0,3.0,10.0,30.0]")):
        with tempfile.TemporaryDirectory() as tmp:
            run(["benchmark=synthetic", f"benchmark.build.num_tasks={T}", f"benchmark.build.scales={scales}",
                 "benchmark.build.n_train=512", "trainer.epochs=3", f"trainer.max_steps_per_epoch={args.steps // 3}",
                 "method=nash_mtl", "logger=none", "trainer.progress=false", f"run.root={tmp}",
                 "run.checkpoint=false", "seed=0"] + ([] if T == 3 else [
                 "+benchmark.protocol.reference.metrics.t3={mae:1.0}", "+benchmark.protocol.reference.metrics.t4={mae:1.0}",
                 "+benchmark.protocol.reference.metrics.t5={mae:1.0}"]))
    out = {}
    for T, rows in records.items():
        out[f"gram{T}"] = np.stack([r[0] for r in rows])
        out[f"start{T}"] = np.stack([r[1] for r in rows])
        out[f"alpha{T}"] = np.stack([r[2] for r in rows])
        out[f"failures{T}"] = np.array([r[3] for r in rows])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: " + ", ".join(f"T={T}: {len(r)} solves, {sum(x[3] for x in r)} failures"
                                              for T, r in records.items()))


if __name__ == "__main__":
    main()
