"""QM9 input pipeline against the model: loader batches/s vs EW training steps/s (CPU).

    python scripts/bench_loader.py --batches 12 --workers 0 2

Builds `qm9_small`'s molecules (the first 5,000; cached after the first use), then times
(a) iterating the training loader at batch 128 (complete-graph + distance transform per molecule,
collation) with 0 and 2 worker processes, and (b) EW training steps of the MPNN (forward, backward,
Adam) on batches already in memory, 2 threads. Writes results/bench/loader_qm9.csv.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "loader_qm9.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    from bench_step import machine
    from mtl import methods
    from mtl.benchmarks.qm9 import build

    rows = []
    n = args.batches * args.batch_size
    for w in args.workers:
        b = build(limit=5000, subset={"train": n, "val": 8, "test": 8}, batch_size=args.batch_size,
                  num_workers=w, progress=False)
        it = b.train_batches(0, 0)
        t0 = time.perf_counter()
        batches = list(it)
        rate = len(batches) / (time.perf_counter() - t0)
        rows.append({"what": f"loader, {w} workers", "per_s": round(rate, 2)})
    model = b.model.train()
    method = methods.create("ew", num_tasks=len(b.tasks))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    shared, heads = model.shared_parameters(), model.task_parameters()

    def step(batch):
        opt.zero_grad(set_to_none=False)
        losses, _ = b.compute_losses(model, batch)
        method.backward(losses, shared, heads)
        opt.step()

    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    rows.append({"what": "EW training step (MPNN, CPU)", "per_s": round((len(batches) - 1) / (time.perf_counter() - t0), 2)})
    now = dt.datetime.now().isoformat(timespec="seconds")
    df = pd.DataFrame([{**r, "batch_size": args.batch_size, "machine": machine(2), "date": now} for r in rows])
    df.to_csv(args.out, index=False)
    print(df[["what", "per_s"]].to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
