"""Optimisation trajectories of balancing methods on the CAGrad / Nash-MTL toy problem.

    python scripts/toy_trajectories.py --methods ew mgda pcgrad cagrad nash_mtl db_mtl --steps 3000

Each method starts from CAGrad's three initial points and is driven through the public method API
(`mtl.methods.create(...).backward`) with Adam; the plot overlays the paths on the landscape of
f1 + f2 (and marks the Pareto set's neighbourhood by the contour). Output: results/toy/trajectories.png
and a CSV of the final points.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from tqdm import tqdm

from mtl import methods
from mtl.benchmarks.toy import STARTS, ToyPoint, objectives, toy_losses


def trajectory(method_name: str, start, steps: int, lr: float, scale: float, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    model = ToyPoint(list(start), scale)
    method = methods.create(method_name, num_tasks=2)
    opt = torch.optim.Adam([model.x, *method.trainable_parameters()], lr=lr)
    path = [model.x.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        losses = toy_losses(model)
        if method.batches_per_step > 1:
            losses = losses.expand(method.batches_per_step, 2)
        method.backward(losses, [model.x], [])
        opt.step()
        if method.wants_post_step_losses:
            with torch.no_grad():
                method.after_step(toy_losses(model))
        path.append(model.x.detach().clone())
        if not torch.isfinite(model.x).all():
            raise FloatingPointError(f"{method_name}: point became non-finite at step {len(path) - 1}")
    return torch.stack(path)


def plot(paths: dict[str, list[torch.Tensor]], scale: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = torch.meshgrid(torch.linspace(-10, 10, 300), torch.linspace(-10, 10, 300), indexing="xy")
    f = objectives(torch.stack([xs, ys], dim=-1), scale).sum(-1)
    n = len(paths)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax, (name, trajs) in zip(axes.flat, paths.items()):
        ax.contourf(xs, ys, f, levels=30, cmap="viridis", alpha=0.8)
        for p in trajs:
            ax.plot(p[:, 0], p[:, 1], color="white", lw=1.5)
            ax.scatter(p[0, 0], p[0, 1], color="white", s=20, marker="o")
            ax.scatter(p[-1, 0], p[-1, 1], color="red", s=30, marker="*", zorder=3)
        ax.set_title(name)
        ax.set_xlim(-10, 10); ax.set_ylim(-10, 10)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Toy problem: trajectories on f1 + f2 (o start, * end)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["ew", "mgda", "pcgrad", "cagrad", "imtl_g", "famo", "db_mtl"])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies f1 (Nash-MTL's imbalance uses 0.1)")
    ap.add_argument("--out", type=Path, default=Path("results/toy/trajectories.png"))
    args = ap.parse_args(argv)
    paths: dict[str, list[torch.Tensor]] = {}
    rows = []
    for name in tqdm(args.methods, desc="methods"):
        paths[name] = [trajectory(name, s, args.steps, args.lr, args.scale) for s in STARTS]
        for s, p in zip(STARTS, paths[name]):
            f = objectives(p[-1], args.scale)
            rows.append({"method": name, "start": list(s), "end_x1": float(p[-1, 0]), "end_x2": float(p[-1, 1]),
                         "f1": float(f[0]), "f2": float(f[1])})
    plot(paths, args.scale, args.out)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader(); w.writerows(rows)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")

