"""QM9 input pipeline against the model: training-loader batches/s vs EW training steps/s.

For each (precompute, workers) pair it builds the QM9 benchmark on the first `limit` molecules and
times `epochs` passes of the training loader over all their training positions at `batch_size`
(complete graphs by default): from `iter(loader)` (worker start-up included, as in a run) to the
last batch, and separately the time to each epoch's first batch. Then it times `steps` EW training
steps of the MPNN (forward, backward, Adam) on batches already in memory with `threads` threads.
`ratio` = loader batches/s / model steps/s: above 1 the loader keeps up with the model here.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from typing import Sequence

import pandas as pd
import torch

from mtl.bench import machine


def load_average() -> float:
    """1-minute load average of this machine (the CPU share other processes took during a run)."""
    return os.getloadavg()[0]


def time_loader(bench, epoch: int = 0, seed: int = 0) -> tuple[list, float, float]:
    """(batches, seconds to the first batch, seconds for the whole pass) of one training epoch."""
    t0 = time.perf_counter()
    it = bench.train_batches(epoch, seed)
    batches = [next(it)]
    first = time.perf_counter() - t0
    batches.extend(it)
    return batches, first, time.perf_counter() - t0


def time_model(bench, batches: Sequence, warmup: int = 1) -> float:
    """EW training steps/s on `batches` (the first `warmup` are not timed)."""
    from mtl import methods

    model = bench.model.train()
    method = methods.create("ew", num_tasks=len(bench.tasks))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    shared, heads = model.shared_parameters(), model.task_parameters()

    def step(batch):
        opt.zero_grad(set_to_none=False)
        losses, _ = bench.compute_losses(model, batch)
        method.backward(losses, shared, heads)
        opt.step()

    for batch in batches[:warmup]:
        step(batch)
    t0 = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    return (len(batches) - warmup) / (time.perf_counter() - t0)


def run(limit: int = 5000, batch_size: int = 128, epochs: int = 3, steps: int = 6, workers: Sequence[int] = (0, 2),
        precompute: Sequence[bool] = (True, False), graph: str = "complete", threads: int = 2,
        root: str | None = None, data_file: str | None = None, log=print) -> pd.DataFrame:
    """One row per loader configuration and one for the model; see the module docstring."""
    from mtl.benchmarks.qm9 import build

    torch.set_num_threads(threads)
    common = dict(root=root, data_file=data_file, limit=None if data_file else limit, graph=graph,
                  subset={"train": None, "val": 8, "test": 8}, batch_size=batch_size, progress=False)
    rows, kept, bench = [], None, None
    for pre in precompute:
        for w in workers:
            bench = build(precompute=pre, num_workers=w, **common)
            load = load_average()
            n, first, total = 0, [], 0.0
            for epoch in range(epochs):
                got, f, t = time_loader(bench, epoch)
                n, total = n + len(got), total + t
                first.append(f)
                kept = kept or got
            rows.append({"what": "loader", "precompute": pre, "workers": w, "batches": n, "seconds": total,
                         "per_s": n / total, "first_batch_s": sum(first) / len(first), "load_1min": load})
            log(f"loader precompute={pre} workers={w}: {rows[-1]['per_s']:.2f} batches/s over {n} batches "
                f"(first batch of an epoch after {rows[-1]['first_batch_s']:.3f} s, load {load:.2f})")
    load = load_average()
    batches = kept[:steps + 1]
    rate = time_model(bench, batches, warmup=1)
    rows.append({"what": "EW training step (MPNN)", "precompute": None, "workers": None, "batches": len(batches) - 1,
                 "seconds": (len(batches) - 1) / rate, "per_s": rate, "first_batch_s": None, "load_1min": load})
    log(f"model: {rate:.3f} EW steps/s ({threads} threads, load {load:.2f})")
    df = pd.DataFrame(rows)
    df["ratio"] = df["per_s"] / rate
    df["graph"], df["batch_size"] = graph, batch_size
    df["train_molecules"] = len(bench.split_positions["train"])
    df["machine"] = machine(threads)
    df["date"] = dt.datetime.now().isoformat(timespec="seconds")
    return df.round({"seconds": 3, "per_s": 3, "first_batch_s": 3, "ratio": 2, "load_1min": 2})
