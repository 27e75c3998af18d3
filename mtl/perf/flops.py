"""FLOP counts of the suite's training steps, and the chips' peaks they are measured against.

`count(model, losses_fn, batch, num_tasks)` runs one forward, one EW backward (sum of the losses)
and the bare loop's T backward passes under `torch.utils.flop_counter.FlopCounterMode`, which
counts the matrix work (convolutions, matmuls, their backward) from the shapes alone, so the model
and the batch can live on the `meta` device (no arithmetic at all). Elementwise ops, norms,
interpolations, scatters and losses are not counted: the FLOP figure is the tensor-core work, the
part a chip's peak refers to.

Columns (GFLOP): forward; backward_ew (one pass of the summed losses); backward_loop (T passes of
`losses[t]` from the stacked [T] losses, what the bare loop and the loop engine do); backward_loop_own
(T passes, each from its own task's scalar loss before stacking). backward_loop is T x backward_ew:
a pass from `losses[t]` of a stack sends zero gradients into every other task's head, and autograd
runs those heads' backward on the zeros; backward_loop_own is what T passes need.

    python -m mtl.perf.flops                    # every workload at its published size -> results/bench/flops.csv
    python -m mtl.perf.flops --workloads qm9_mpnn --device cpu

Workloads (random init, published sizes): `nyuv2_deeplab` (DeepLabV3+ HPS, dilated ResNet-50 +
3 ASPP heads, batch 8 of 288x384), `nyuv2_segnet_mtan` (SegNet-MTAN, batch 2 of 288x384),
`cityscapes_deeplab` (DeepLabV3+ HPS, 2 tasks, batch 64 of 128x256), `qm9_mpnn` (the MPNN, 11
heads, batch 128 molecules of 18 atoms as complete graphs: 39,168 directed edges, QM9's mean),
`office_resnet18` (ResNet-18 + 512 hidden, 3 domains x batch 64 of 224x224).

`PEAKS`: dense (no 2:4 sparsity) tensor-core peaks from the vendors' data sheets;
`peak_tflops(device, precision)` picks the one for a device and precision, or measures a matmul
on a device with no entry (the CPU): `measured matmul` in its `source`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mtl.paths import project_root

# TFLOP/s, dense. Sources: NVIDIA H100 Tensor Core GPU datasheet (2023-2024; the figures there are
# "with sparsity", halved here) and NVIDIA H200 datasheet (same compute as H100 SXM).
_H100_SXM = {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}
_H100_PCIE = {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2}
PEAKS: dict[str, dict[str, Any]] = {
    "H100 SXM (80GB HBM3)": {**_H100_SXM, "match": ("h100 80gb hbm3", "h100 sxm"),
                             "source": "NVIDIA H100 datasheet, SXM5: 1,979 bf16/fp16, 989 TF32 TFLOPS with sparsity; 67 fp32"},
    "H100 PCIe / NVL": {**_H100_PCIE, "match": ("h100 pcie", "h100 nvl"),
                        "source": "NVIDIA H100 datasheet, PCIe: 1,513 bf16/fp16, 756 TF32 TFLOPS with sparsity; 51 fp32"},
    "H200 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0, "match": ("h200 nvl",),
                 "source": "NVIDIA H200 datasheet, NVL: 1,671 bf16/fp16, 835 TF32 TFLOPS with sparsity; 60 fp32"},
    "H200": {**_H100_SXM, "match": ("h200",),
             "source": "NVIDIA H200 datasheet: 1,979 bf16/fp16, 989 TF32 TFLOPS with sparsity; 67 fp32 (as H100 SXM)"},
}


def chip_peak(device_name: str) -> tuple[str, dict[str, Any]] | None:
    low = device_name.lower()
    for chip, entry in PEAKS.items():
        if any(m in low for m in entry["match"]):
            return chip, entry
    return None


def math_mode(precision: str, device: torch.device) -> str:
    """What the tensor cores run for `precision` on `device`: bf16/fp16 as asked; fp32 convolutions
    run as TF32 on CUDA when cuDNN allows it (PyTorch's default), matmuls only when
    float32_matmul_precision is not 'highest'. The conv nets' work is convolutions: fp32 -> tf32 then."""
    if precision in ("bf16", "fp16"):
        return precision
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "fp32"


def measure_matmul_tflops(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                          n: int = 1024, reps: int = 5) -> float:
    """Achieved TFLOP/s of an n x n matmul on `device` (best of `reps`): a practical peak where no
    data sheet applies (the CPU)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12


def peak_tflops(device: str | torch.device, precision: str = "fp32") -> tuple[float, str]:
    """(peak TFLOP/s, source) for `precision` on `device`: the data-sheet peak of a known chip, else a
    measured matmul on the device (labelled so)."""
    device = torch.device(device)
    mode = math_mode(precision, device)
    if device.type == "cuda":
        found = chip_peak(torch.cuda.get_device_name(device))
        if found:
            chip, entry = found
            return entry[mode], f"{chip} dense {mode} ({entry['source']})"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    if device.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32
    return measure_matmul_tflops(device, dtype), f"measured matmul 1024^3 {str(dtype).split('.')[-1]} on {device}"


# ---- counting -------------------------------------------------------------------------------------
def _flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def count(model: nn.Module, losses_fn: Callable[[nn.Module, Any], torch.Tensor], batch: Any,
          num_tasks: int) -> dict[str, int]:
    """FLOPs of one forward, of the EW step's backward (one pass of the summed losses) and of the bare
    loop's backward (T passes, `retain_graph`), for `losses_fn(model, batch) -> [T] losses`."""
    model.train()
    out: dict[str, int] = {}
    holder: dict[str, torch.Tensor] = {}

    def forward():
        losses = losses_fn(model, batch)
        if isinstance(losses, (list, tuple)):  # per-task scalars: stacked as the trainer stacks them
            holder["parts"], losses = list(losses), torch.stack(list(losses))
        holder["losses"] = losses

    out["forward"] = _flops(forward)
    out["backward_ew"] = _flops(lambda: holder["losses"].sum().backward())
    forward()

    def loop():
        losses = holder["losses"]
        for t in range(num_tasks):
            losses[t].backward(retain_graph=t < num_tasks - 1)

    out["backward_loop"] = _flops(loop)
    if "parts" in holder:  # the same T passes, each from its own task's loss (not through the stack)
        forward()
        parts = holder["parts"]
        out["backward_loop_own"] = _flops(lambda: [p.backward(retain_graph=i < len(parts) - 1)
                                                   for i, p in enumerate(parts)])
    model.zero_grad(set_to_none=True)
    out["ew_step"] = out["forward"] + out["backward_ew"]
    out["bare_loop_step"] = out["forward"] + out["backward_loop"]
    return out


def surrogate_losses(model: nn.Module, batch: Any) -> torch.Tensor:
    """T per-task 'losses' = mean of each task's output: the same counted work as the real losses
    (which add no matrix work) and defined on the meta device (no data-dependent ops). A list:
    `count` stacks it as the trainer does, and also counts the T passes from each scalar itself."""
    preds, _ = model(batch)
    return [p.float().mean() for p in preds.values()]


@dataclass
class FlopWorkload:
    name: str
    description: str
    make_model: Callable[[], nn.Module]
    make_batch: Callable[[torch.device], Any]
    num_tasks: int


def _dense(arch: str, out: dict[str, int], size: tuple[int, int], batch: int, **kw):
    def make_model():
        from mtl.benchmarks.dense import build_model

        return build_model(arch, out, size, pretrained=False, **kw)

    def make_batch(device):
        return torch.randn(batch, 3, *size, device=device)

    return make_model, make_batch


def qm9_batch(num_graphs: int = 128, atoms: int = 18, device: str | torch.device = "cpu", seed: int = 0):
    """A PyG batch of `num_graphs` complete graphs of `atoms` atoms (x [N, 11], edge_attr [E, 5])."""
    from torch_geometric.data import Batch, Data

    gen = torch.Generator().manual_seed(seed)
    idx = torch.arange(atoms)
    src, dst = idx.repeat_interleave(atoms), idx.repeat(atoms)
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    graphs = [Data(x=torch.randn(atoms, 11, generator=gen), edge_index=ei.clone(),
                   edge_attr=torch.randn(ei.shape[1], 5, generator=gen), y=torch.randn(1, 19, generator=gen))
              for _ in range(num_graphs)]
    return Batch.from_data_list(graphs).to(device)


def _office_batch(batch: int, size: int):
    def make_batch(device):
        return {t: torch.randn(batch, 3, size, size, device=device) for t in ("amazon", "dslr", "webcam")}
    return make_batch


def workloads(size: str = "full") -> dict[str, FlopWorkload]:
    """The counted workloads; size='tiny' gives the same networks at toy sizes (for the tests)."""
    full = size == "full"
    nyu = {"segmentation": 13, "depth": 1, "normal": 3}
    hw = (288, 384) if full else (32, 64)
    city = (128, 256) if full else (32, 64)
    tiny_deeplab = {} if full else {"backbone": "tiny", "dilated": False, "head_channels": 8}
    w = {}
    m, b = _dense("hps", nyu, hw, 8 if full else 2, **tiny_deeplab)
    w["nyuv2_deeplab"] = FlopWorkload("nyuv2_deeplab", f"DeepLabV3+ HPS (dilated ResNet-50, 3 ASPP heads), batch "
                                      f"{8 if full else 2} of {hw[0]}x{hw[1]}", m, b, 3)
    m, b = _dense("segnet_mtan", nyu, hw, 2, **({} if full else {"segnet_filters": [4, 8, 8, 8, 8]}))
    w["nyuv2_segnet_mtan"] = FlopWorkload("nyuv2_segnet_mtan", f"SegNet-MTAN, batch 2 of {hw[0]}x{hw[1]}", m, b, 3)
    m, b = _dense("hps", {"segmentation": 7, "depth": 1}, city, 64 if full else 2, **tiny_deeplab)
    w["cityscapes_deeplab"] = FlopWorkload("cityscapes_deeplab", f"DeepLabV3+ HPS (dilated ResNet-50, 2 ASPP heads), "
                                           f"batch {64 if full else 2} of {city[0]}x{city[1]}", m, b, 2)
    names = ["mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv"]
    graphs, atoms = (128, 18) if full else (4, 5)

    def make_mpnn():
        from mtl.models.mpnn import mpnn_hps

        return mpnn_hps(names, dim=64, share_edge_weights=True)

    w["qm9_mpnn"] = FlopWorkload("qm9_mpnn", f"MPNN (dim 64, shared edge network, Set2Set), 11 heads, batch {graphs} "
                                 f"complete graphs of {atoms} atoms ({graphs * atoms * (atoms - 1)} edges)",
                                 make_mpnn, lambda device: qm9_batch(graphs, atoms, device), 11)
    ob, osz = (64, 224) if full else (2, 32)

    def make_office():
        from mtl.models.office_net import OfficeNet

        return OfficeNet(["amazon", "dslr", "webcam"], 31, pretrained=False)

    w["office_resnet18"] = FlopWorkload("office_resnet18", f"ResNet-18 + Linear(512,512) encoder, 3 domains x batch "
                                        f"{ob} of {osz}x{osz}", make_office, _office_batch(ob, osz), 3)
    return w


def count_workload(w: FlopWorkload, device: str = "meta") -> dict[str, int]:
    """Count `w` on `device` ('meta': shapes only; falls back to the CPU if an op has no meta kernel)."""
    torch.manual_seed(0)
    if device == "meta":
        with torch.device("meta"):
            model = w.make_model()
        batch = w.make_batch(torch.device("meta"))
    else:
        model = w.make_model().to(device)
        batch = w.make_batch(torch.device(device))
    return count(model, surrogate_losses, batch, w.num_tasks)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="*", default=None)
    ap.add_argument("--device", default="meta", help="meta (shapes only, default) | cpu (real arithmetic)")
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--out", default=str(project_root() / "results" / "bench" / "flops.csv"))
    args = ap.parse_args(argv)
    import pandas as pd

    all_w = workloads(args.size)
    names = args.workloads or list(all_w)
    rows = []
    command = "python -m mtl.perf.flops " + " ".join(argv if argv is not None else sys.argv[1:])
    for name in names:
        w = all_w[name]
        device = args.device
        try:
            c = count_workload(w, device)
        except Exception as err:  # an op without a meta kernel: count with real arithmetic on the CPU
            if device != "meta":
                raise
            print(f"{name}: meta failed ({type(err).__name__}: {str(err)[:80]}); counting on the CPU", file=sys.stderr)
            device = "cpu"
            c = count_workload(w, device)
        rows.append({"workload": name, "description": w.description, "tasks": w.num_tasks,
                     **{f"{k}_gflop": round(v / 1e9, 3) for k, v in c.items()}, "counted_on": device,
                     "command": command.strip(), "torch": torch.__version__,
                     "date": dt.date.today().isoformat()})
        print(f"{name}: forward {c['forward'] / 1e9:.1f} GFLOP, EW step {c['ew_step'] / 1e9:.1f}, "
              f"bare loop {c['bare_loop_step'] / 1e9:.1f} (on {device})", flush=True)
    df = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
