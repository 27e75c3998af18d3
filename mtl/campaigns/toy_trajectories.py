"""Optimisation trajectories of balancing methods on the CAGrad / Nash-MTL toy problem.

    python scripts/toy_trajectories.py --methods ew mgda pcgrad cagrad nash_mtl db_mtl --steps 3000

Each method starts from CAGrad's three initial points and is driven through the public method API
(`mtl.methods.create(...).backward`) with Adam; the plot overlays the paths on the landscape of
f1 + f2 with axis labels (x1, x2) and the Pareto set (the points of a 400x400 grid of [-10, 10]^2
that no other grid point beats on both objectives, `pareto_set`). Output: a PNG and a CSV of the final
points, by default under outputs/toy/ (not committed); the committed figure is regenerated only when
asked: `--out results/toy/trajectories.png`.
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


DEFAULT_OUT = Path("outputs/toy/trajectories.png")
COMMITTED = Path("results/toy/trajectories.png")


def pareto_set(scale: float = 1.0, n: int = 400, lim: float = 10.0) -> torch.Tensor:
    """The grid points x of [-lim, lim]^2 (n x n) whose (f1, f2) no other grid point dominates
    (<= on both, < on one): the Pareto set in parameter space, to the grid's resolution. [m, 2]."""
    xs, ys = torch.meshgrid(torch.linspace(-lim, lim, n), torch.linspace(-lim, lim, n), indexing="xy")
    pts = torch.stack([xs.flatten(), ys.flatten()], dim=-1).double()
    f = objectives(pts, scale)
    order = torch.argsort(f[:, 0] + 1e-12 * f[:, 1])  # by f1, then f2
    keep, best_f2 = [], float("inf")
    for i in order.tolist():
        if f[i, 1] < best_f2:
            keep.append(i)
            best_f2 = float(f[i, 1])
    return pts[keep].float()


def figure(paths: dict[str, list[torch.Tensor]], scale: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = pareto_set(scale)
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
        ax.scatter(ps[:, 0], ps[:, 1], s=1, color="black", linewidths=0, zorder=2, label="Pareto set")
        ax.set_title(name)
        ax.set_xlim(-10, 10); ax.set_ylim(-10, 10)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="black", marker="o", ls="", ms=3, label="Pareto set (grid)"),
               Line2D([], [], color="white", lw=1.5, marker="o", ms=4, markeredgecolor="0.3", label="path, o start"),
               Line2D([], [], color="red", marker="*", ls="", ms=8, label="end")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, bbox_to_anchor=(0.5, 0.0),
               facecolor="0.85")
    fig.suptitle("Toy problem: trajectories on the landscape of f1 + f2 (deterministic: one run per start)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot(paths: dict[str, list[torch.Tensor]], scale: float, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(paths, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["ew", "mgda", "pcgrad", "cagrad", "imtl_g", "famo", "db_mtl"])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies f1 (Nash-MTL's imbalance uses 0.1)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"PNG (and .csv beside it); default {DEFAULT_OUT}. The committed figure is {COMMITTED}: "
                         f"pass it here to regenerate it")
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

