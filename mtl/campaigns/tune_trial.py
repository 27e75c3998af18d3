"""One trial of `make tune`: the Hydra task function Hydra's Optuna sweeper calls (it needs the
objective as the return value, which `python -m mtl.train` does not give). The run dir is named by a
hash of the tuned values (run.tag `_trial-<hash>`), so replaying the seeded study on a relaunch finds
finished trials (skipped by the trainer) and resumes an interrupted one; the objective is the
validation Δp of the epoch the protocol selects on validation (`mtl.campaigns.tune.objective`).

    python -m mtl.campaigns.tune_trial -m experiment=tune benchmark=<b> method=<m> +tune=<m> ...
    (use scripts/tune.py / `make tune`, which also writes the summary and trains the best on seeds)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mtl.config.compose import CONFIG_DIR


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from mtl.campaigns.tune import objective, trial_tag
    from mtl.config import schema
    from mtl.run.entry import train

    schema.check(cfg)
    hc = HydraConfig.get()
    keys = sorted((hc.sweeper.get("params") or {}).keys())
    values = {k: OmegaConf.select(cfg, k) for k in keys}
    cfg.run.tag = trial_tag(values)
    run_dir = train(cfg)
    value = objective(run_dir)
    record = {"trial": hc.job.num, "params": values, "run_dir": str(run_dir), "val_delta_p": value}
    Path(hc.runtime.output_dir, "trial.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"[tune] trial {hc.job.num}: val Δp {value:+.3f} ({', '.join(f'{k}={v}' for k, v in values.items())})",
          flush=True)
    return value


if __name__ == "__main__":
    sys.exit(main())
