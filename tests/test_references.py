"""Published references: IGB's NYUv2 STL vector as data (Δm against it equals IGB4MTL's
`delta_fn`), and every benchmark config is placed against the published tables."""
import re
from pathlib import Path

import numpy as np
import pytest

from mtl.scoring.delta import delta_m
from mtl.benchmarks import spec
from mtl.config.compose import compose

ROOT = Path(__file__).resolve().parents[1]


def igb_delta_fn(a):
    """IGB4MTL experiments/nyuv2/utils.py delta_fn, transcribed (metrics as fractions)."""
    BASE = np.array([0.4116, 0.657, 0.6074, 0.24, 24.49, 18.24, 0.3192, 0.5916, 0.7056])
    SIGN = np.array([1, 1, 0, 0, 0, 0, 1, 1, 1])
    KK = np.ones(9) * -1
    return (KK ** SIGN * (a - BASE) / BASE).mean() * 100.0


def test_igb_reference_gives_igb_delta_m():
    from omegaconf import OmegaConf

    cfg = compose(["benchmark=nyuv2_segnet",
                   "benchmark.protocol.reference_m=${benchmark.protocol.references.igb}"])
    ref = OmegaConf.to_container(cfg.benchmark.protocol.reference_m.metrics, resolve=True)
    assert "IGB4MTL" in cfg.benchmark.protocol.reference_m.source
    tasks = spec("nyuv2_segnet").tasks
    frac = np.array([0.40, 0.66, 0.55, 0.23, 25.5, 19.9, 0.29, 0.56, 0.69])  # a run, IGB's units
    pct = frac * np.array([100, 100, 1, 1, 1, 1, 100, 100, 100])
    names = [("segmentation", "mIoU"), ("segmentation", "PAcc"), ("depth", "AErr"), ("depth", "RErr"),
             ("normal", "Mean"), ("normal", "MED"), ("normal", "Within11.25"), ("normal", "Within22.5"),
             ("normal", "Within30")]
    metrics: dict = {}
    for (t, m), v in zip(names, pct):
        metrics.setdefault(t, {})[m] = float(v)
    assert delta_m(metrics, ref, tasks) == pytest.approx(igb_delta_fn(frac), rel=1e-9)
    # and it differs from the CAGrad/nash-mtl vector the config uses by default
    default = compose(["benchmark=nyuv2_segnet"]).benchmark.protocol.reference_m.metrics
    assert delta_m(metrics, OmegaConf.to_container(default), tasks) != pytest.approx(igb_delta_fn(frac), abs=0.1)


def test_every_benchmark_config_is_placed_against_published_tables():
    text = (ROOT / "results" / "paper" / "README.md").read_text()
    section = text.split("## Which published tables each benchmark config can be compared with")[1]
    listed = set(re.findall(r"`(\w+)`", "\n".join(l.split("|")[1] for l in section.splitlines() if l.startswith("| `"))))
    configs = {p.stem for p in (ROOT / "configs" / "benchmark").glob("*.yaml")}
    assert configs <= listed, f"benchmark configs not placed in results/paper/README.md: {sorted(configs - listed)}"
