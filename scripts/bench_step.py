"""Time one training step of each balancing method against a bare loop of T backward passes and EW.

A step is what the trainer does: zero_grad, forward, per-task losses, method.backward, optimizer
step (+ the post-step re-forward and `after_step` for methods that want it; methods consuming k
batches per step get k batches). The reference row `bare_loop` is the floor of every gradient
method: the same forward, T backward passes (`losses[t].backward()` one after the other, so
`.grad` receives the plain sum) and the same optimizer step, nothing else. Repetitions are
interleaved (for rep: for method: one step) in one process so that machine noise hits every method
alike; the median step time is reported, and each ratio is the median over repetitions of the ratio
to the reference's step in the same repetition (paired: robust to load that changes between
repetitions on a shared machine). After timing, one more step per method runs under
`mtl.syncs.SyncCounter` to count device->host synchronisations.

    python scripts/bench_step.py --workload resnet18_office --methods ew db_mtl db_mtl_rep --reps 15

Workloads: `resnet18_office` (torchvision ResNet-18, weights=None, fc -> Identity, three
Linear(512, 31) heads, batch 16 of 3x112x112, 2 threads, Adam), `nyuv2_hps_96x128` (NYUv2's
DeepLabV3+ HPS, dilated ResNet-50 + three ASPP heads, random init, batch 2 of a 96x128 fixture: the
heads' share of the step at CPU size) and `mlp` (cheap smoke run).
`db_mtl@jacobian` is DB-MTL through the generic gradient-method path (the [T, D] Jacobian copy,
then EMA, norms and combination on it: the implementation before the streamed loop), for comparison.
`--device cuda` times on a GPU (synchronised), `--precision bf16|fp16` runs the forward pass under
autocast. Writes results/bench/step_<workload>.csv (method, median_ms, ratio_to_bare_loop,
ratio_to_ew, backward_passes_per_step, host_syncs_per_step, engine, precision, device, peak_mib,
workload, machine, date); backward passes are counted at the encoder output (how many times a
gradient flows back through the shared encoder per step).
"""
from mtl.bench.step import main

if __name__ == "__main__":
    main()
