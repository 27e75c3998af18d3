"""QM9 input pipeline against the model: training-loader batches/s vs EW training steps/s.

For each (precompute, workers) pair it builds the QM9 benchmark on the first `limit` molecules and
times one pass over `batches` training batches of `batch_size` (complete graphs by default), from
`iter(loader)` (worker start-up included) to the last batch, and separately the time to the first
batch. Then it times EW training steps of the MPNN (forward, backward, Adam) on batches already in
memory with `threads` threads. `ratio` = loader batches/s / model steps/s: above 1 the loader keeps
up with the model on this machine.
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


def run(limit: int = 5000, batch_size: int = 128, batches: int = 12, workers: Sequence[int] = (0, 2),
        precompute: Sequence[bool] = (True, False), graph: str = "complete", threads: int = 2,
        root: str | None = None, data_file: str | None = None, log=print) -> pd.DataFrame:
    """One row per loader configuration and one for the model; see the module docstring."""
    from mtl.benchmarks.qm9 import build

    torch.set_num_threads(threads)
    n = batches * batch_size
    common = dict(root=root, data_file=data_file, limit=None if data_file else limit, graph=graph,
                  subset={"train": n, "val": 8, "test": 8}, batch_size=batch_size, progress=False)
    rows, kept, bench = [], None, None
    for pre in precompute:
        for w in workers:
            bench = build(precompute=pre, num_workers=w, **common)
            load = load_average()
            got, first, total = time_loader(bench)
            rows.append({"what": "loader", "precompute": pre, "workers": w, "per_s": len(got) / total,
                         "first_batch_s": first, "load_1min": load})
            log(f"loader precompute={pre} workers={w}: {rows[-1]['per_s']:.2f} batches/s "
                f"(first batch after {first:.3f} s, load {load:.2f})")
            kept = got
    load = load_average()
    steps = time_model(bench, kept)
    rows.append({"what": "EW training step (MPNN)", "precompute": None, "workers": None, "per_s": steps,
                 "first_batch_s": None, "load_1min": load})
    log(f"model: {steps:.3f} EW steps/s ({threads} threads, load {load:.2f})")
    df = pd.DataFrame(rows)
    df["ratio"] = df["per_s"] / steps
    df["graph"], df["batch_size"], df["molecules"] = graph, batch_size, len(bench.source)
    df["machine"] = machine(threads)
    df["date"] = dt.datetime.now().isoformat(timespec="seconds")
    return df.round({"per_s": 3, "first_batch_s": 3, "ratio": 2, "load_1min": 2})
