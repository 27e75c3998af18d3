"""QM9 input pipeline against the model: training-loader batches/s vs EW training steps/s.

For each (precompute, workers) pair it builds the QM9 benchmark on the first `limit` molecules and
times `epochs` passes of the training loader over all their training positions at `batch_size`
(complete graphs by default), the pairs taking turns: from `iter(loader)` (worker start-up
included, as in a run) to the last batch, and separately the time to each epoch's first batch.
Then it times `steps` EW training steps of the MPNN (forward, backward, Adam) on batches already
in memory with `threads` threads.
`ratio` = loader batches/s / model steps/s: above 1 the loader keeps up with the model here.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from mtl.perf import machine
from mtl.paths import project_root

ROOT = project_root()


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


def assembly(batches: int = 40, batch_size: int = 128, graph: str = "complete", root: str | None = None,
             limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Batch assembly on one thread (a loader worker's work) over random batches of the built QM9
    (all 130,831 molecules by default): the precomputed gather against per-molecule transform +
    PyG collation. One row per path; per_s = batches/s of one worker."""
    from torch_geometric.data import Batch

    from mtl.datasets.qm9 import QM9, PrecomputedGraphs
    from mtl.benchmarks.qm9 import reference_transform

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        source = QM9(root=root, limit=limit, progress=False)
        pre = PrecomputedGraphs(source, graph, progress=False)
        transform = reference_transform(graph)
        gen = torch.Generator().manual_seed(seed)
        ids = [torch.randperm(len(source), generator=gen)[:batch_size].tolist() for _ in range(batches)]
        load = load_average()
        t0 = time.perf_counter()
        for b in ids:
            pre.batch(b)
        gather = time.perf_counter() - t0
        few = ids[:max(1, batches // 4)]
        t0 = time.perf_counter()
        for b in few:
            Batch.from_data_list([transform(source[i]) for i in b])
        per_item = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    edges = int(pre.slices["edge_index"].diff()[torch.tensor(ids[0])].sum())
    what = f"batch assembly, 1 thread, {len(source)} molecules ({edges} edges in the first batch)"
    return pd.DataFrame([
        {"what": what, "precompute": True, "batches_per_epoch": len(ids), "per_s": len(ids) / gather, "load_1min": load},
        {"what": what, "precompute": False, "batches_per_epoch": len(few), "per_s": len(few) / per_item,
         "load_1min": max(load, load_average())}])


def run(limit: int = 5000, batch_size: int = 128, epochs: int = 5, steps: int = 6, workers: Sequence[int] = (0, 2),
        precompute: Sequence[bool] = (True, False), graph: str = "complete", threads: int = 2,
        root: str | None = None, data_file: str | None = None, assembly_batches: int = 0,
        log=print) -> pd.DataFrame:
    """One row per loader configuration and one for the model; see the module docstring
    (`assembly_batches` > 0 adds `assembly`'s rows on the full built QM9). The
    configurations take turns, one epoch each, `epochs` rounds (load from other processes then
    falls on all of them alike); per_s is the median over rounds, per_s_min/max the range."""
    import statistics

    from mtl.benchmarks.qm9 import build

    torch.set_num_threads(threads)
    common = dict(root=root, data_file=data_file, limit=None if data_file else limit, graph=graph,
                  subset={"train": None, "val": 8, "test": 8}, batch_size=batch_size, progress=False)
    configs = [(pre, w) for pre in precompute for w in workers]
    benches = {c: build(precompute=c[0], num_workers=c[1], **common) for c in configs}
    rates, firsts, loads, kept = {c: [] for c in configs}, {c: [] for c in configs}, [], None
    for epoch in range(epochs):
        loads.append(load_average())
        for c in configs:
            got, first, total = time_loader(benches[c], epoch)
            rates[c].append(len(got) / total)
            firsts[c].append(first)
            kept = kept or got
    rows = []
    for (pre, w) in configs:
        r = rates[(pre, w)]
        rows.append({"what": "loader", "precompute": pre, "workers": w, "batches_per_epoch": len(kept),
                     "epochs": epochs, "per_s": statistics.median(r), "per_s_min": min(r), "per_s_max": max(r),
                     "first_batch_s": statistics.median(firsts[(pre, w)]), "load_1min": max(loads)})
        log(f"loader precompute={pre} workers={w}: {rows[-1]['per_s']:.2f} batches/s (median of {epochs} "
            f"epochs, {min(r):.1f}-{max(r):.1f}; first batch of an epoch after {rows[-1]['first_batch_s']:.3f} s)")
    load = load_average()
    bench = benches[configs[0]]
    batches = kept[:steps + 1]
    rate = time_model(bench, batches, warmup=1)
    rows.append({"what": "EW training step (MPNN)", "precompute": None, "workers": None, "batches_per_epoch": None,
                 "epochs": None, "per_s": rate, "per_s_min": None, "per_s_max": None, "first_batch_s": None,
                 "load_1min": max(load, load_average())})
    log(f"model: {rate:.3f} EW steps/s over {len(batches) - 1} steps ({threads} threads); load average "
        f"{min(loads):.2f}-{max(loads + [load]):.2f}")
    df = pd.DataFrame(rows)
    df["train_molecules"] = len(bench.split_positions["train"])  # of the loader and model rows
    if assembly_batches:
        df = pd.concat([df, assembly(assembly_batches, batch_size, graph, root)], ignore_index=True)
        log(df.iloc[-2:][["what", "precompute", "per_s"]].to_string(index=False))
    df["ratio"] = df["per_s"] / rate
    df["graph"], df["batch_size"] = graph, batch_size
    df["machine"] = machine(threads)
    df["date"] = dt.datetime.now().isoformat(timespec="seconds")
    return df.round({"per_s": 3, "per_s_min": 3, "per_s_max": 3, "first_batch_s": 3, "ratio": 2, "load_1min": 2})


def main(argv=None):
    ap = argparse.ArgumentParser(description="QM9 input pipeline against the model: loader batches/s vs EW "
                                             "training steps/s (CPU); see this module's run()")
    ap.add_argument("--limit", type=int, default=5000, help="molecules built (the first ones)")
    ap.add_argument("--epochs", type=int, default=5, help="loader passes over the training molecules (rounds)")
    ap.add_argument("--steps", type=int, default=6, help="timed model steps (after one warm-up step)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--precompute", choices=["true", "false"], nargs="+", default=["true", "false"])
    ap.add_argument("--graph", choices=["complete", "bonds"], default="complete")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the model steps")
    ap.add_argument("--root", default=None, help="QM9 cache dir (default $QM9_ROOT or data/qm9)")
    ap.add_argument("--assembly", type=int, default=0, metavar="N",
                    help="also time N random batches' assembly on one thread over the full built QM9 (its cache "
                         "and ~500 MB of precomputed complete graphs are built if absent)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "loader_qm9.csv"))
    args = ap.parse_args(argv)

    df = run(limit=args.limit, batch_size=args.batch_size, epochs=args.epochs, steps=args.steps, workers=args.workers,
             precompute=[p == "true" for p in args.precompute], graph=args.graph, threads=args.threads,
             root=args.root, assembly_batches=args.assembly)
    df.to_csv(args.out, index=False)
    print(df[["what", "precompute", "workers", "per_s", "per_s_min", "per_s_max", "ratio", "first_batch_s"]].to_string(index=False))
    print(f"wrote {args.out}")
