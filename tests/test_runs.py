"""The run store (mtl.report.runs): one DataFrame row per finished run with its metrics, Δ and flattened
config; and the table builder's W&B table runs (a capturing fake, plus one real offline run)."""
from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from mtl.report.runs import metric_columns, read_run, read_runs
from mtl.report.tables import regenerate
from test_tables import write_paper_runs


def fake_run(root: Path, bench: str, folder: str, seed: int, *, method: str | None = None, beta: float = 0.5,
             delta: float = 1.0, reported: dict | None = None) -> Path:
    d = root / bench / folder / f"seed{seed}"
    d.mkdir(parents=True)
    method = method or folder
    summary = {"benchmark": bench, "method": method, "tag": folder[len(method):], "seed": seed,
               "selection": "best_val", "metrics": {"t0": {"mae": 0.1 * (seed + 1)}, "t1": {"mae": 2.0}},
               "delta_p": delta, "delta_m": -delta, "delta_p_per_task": {"t0": delta, "t1": 0.0},
               "wall_time_s": 3.0, "reported": reported or {}}
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.yaml").write_text(f"seed: {seed}\nmethod:\n  name: {method}\n  beta: {beta}\n"
                                   f"trainer:\n  epochs: 2\n  milestones: [1, 2]\n")
    return d


def test_one_row_per_run_with_metrics_delta_and_config(tmp_path):
    fake_run(tmp_path, "synthetic", "db_mtl", 0, beta=0.5, delta=1.0)
    fake_run(tmp_path, "synthetic", "db_mtl", 1, beta=0.5, delta=3.0)
    fake_run(tmp_path, "synthetic", "db_mtl_beta0.9", 0, method="db_mtl", beta=0.9, delta=5.0)
    fake_run(tmp_path, "other", "ew", 0)
    df = read_runs(tmp_path, "synthetic")
    assert len(df) == 3 and set(df["benchmark"]) == {"synthetic"}
    assert df["method"].tolist() == ["db_mtl", "db_mtl", "db_mtl_beta0.9"]
    assert df["tag"].tolist() == ["", "", "_beta0.9"] and (df["trained"] == "db_mtl").all()
    assert df["seed"].tolist() == [0, 1, 0] and df["path"].iloc[2] == str(tmp_path / "synthetic/db_mtl_beta0.9/seed0")
    assert metric_columns(df) == ["t0/mae", "t1/mae"] and df["t0/mae"].tolist() == pytest.approx([0.1, 0.2, 0.1])
    assert df["delta_p/t0"].tolist() == [1.0, 3.0, 5.0] and df["delta_m"].tolist() == [-1.0, -3.0, -5.0]
    # config.yaml flattened to dotted columns: sweeps group by a hyperparameter
    assert df.groupby("config.method.beta")["delta_p"].mean().to_dict() == {0.5: 2.0, 0.9: 5.0}
    assert df["config.trainer.milestones"].iloc[0] == [1, 2] and df["config.seed"].tolist() == [0, 1, 0]
    assert len(read_runs(tmp_path)) == 4 and "config.method.beta" not in read_runs(tmp_path, config=False)


def test_rule_selects_the_reported_metrics_and_unknown_rule_is_named(tmp_path):
    last = {"metrics": {"t0": {"mae": 7.0}, "t1": {"mae": 8.0}}, "delta_p": -9.0, "delta_m": 9.0,
            "delta_p_per_task": {"t0": -9.0, "t1": -9.0}}
    d = fake_run(tmp_path, "synthetic", "ew", 0, reported={"last10": last})
    row = read_run(d, rule="last10")
    assert (row["t0/mae"], row["delta_p"], row["delta_p/t1"], row["selection"]) == (7.0, -9.0, -9.0, "last10")
    assert read_run(d)["t0/mae"] == pytest.approx(0.1)
    with pytest.raises(KeyError, match="has no selection rule 'best_test'"):
        read_run(d, rule="best_test")


def test_damaged_config_is_named_and_the_run_still_read(tmp_path, capsys):
    d = fake_run(tmp_path, "synthetic", "ew", 0)
    (d / "config.yaml").write_text("method: [unclosed\n")
    df = read_runs(tmp_path)
    assert len(df) == 1 and not any(c.startswith("config.") for c in df.columns)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{d / 'config.yaml'}: damaged config" in err[0]


def test_no_runs_is_an_empty_frame_with_the_run_columns(tmp_path):
    df = read_runs(tmp_path / "nothing")
    assert df.empty and {"benchmark", "method", "seed", "path"} <= set(df.columns)


# ---- W&B table runs -----------------------------------------------------------------------------
LOGGER = {"name": "wandb", "mode": "offline", "project": "mtl-balancing", "entity": None, "group": "x/y",
          "init_timeout": 30}


class FakeRun:
    def __init__(self, calls, **kwargs):
        self.calls, self.kwargs, self.logged, self.finished = calls, kwargs, [], False
        self.dir = str(Path(kwargs["dir"]) / "wandb" / "offline-run-fake" / "files")

    def log(self, payload):
        self.logged.append(payload)

    def finish(self):
        self.finished = True


def fake_wandb(calls: list) -> types.ModuleType:
    wb = types.ModuleType("wandb")
    wb.errors = types.SimpleNamespace(CommError=type("CommError", (Exception,), {}))
    wb.Settings = lambda **kw: kw
    wb.Table = lambda columns, data: {"columns": columns, "data": data}
    wb.Image = lambda path: {"image": path}

    def init(**kwargs):
        calls.append(FakeRun(calls, **kwargs))
        return calls[-1]

    wb.init = init
    return wb


def test_table_run_logs_ours_beside_the_paper_with_plots(tmp_path, monkeypatch):
    calls: list[FakeRun] = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    write_paper_runs(tmp_path / "runs", "nyuv2", skip=("stl", "ew"))  # EW has no run: paper row only
    paths = regenerate("nyuv2", tmp_path / "runs", tmp_path / "tables", quiet=True,
                       logger={**LOGGER, "dir": str(tmp_path / "wandb")})
    assert len(calls) == 1
    run = calls[0]
    assert run.kwargs["name"] == "tables-nyuv2" and run.kwargs["job_type"] == "table"
    assert run.kwargs["project"] == "mtl-balancing" and run.kwargs["mode"] == "offline"
    assert run.kwargs["group"] == "tables" and run.kwargs["config"]["benchmark"] == "nyuv2" and run.finished
    (payload,) = run.logged
    table = payload["table"]
    cols = table["columns"]
    assert cols[:4] == ["method", "source", "seeds", "status"]
    assert {"segmentation/mIoU", "delta_p", "delta_m", "mr"} <= set(cols)
    rows = {(r[0], r[1]): dict(zip(cols, r)) for r in table["data"]}
    db, db_paper = rows[("DB-MTL", "ours")], rows[("DB-MTL", "paper")]
    assert db["segmentation/mIoU"] == db_paper["segmentation/mIoU"] == pytest.approx(53.50, abs=5)
    assert db["delta_p"] == pytest.approx(db_paper["delta_p"], abs=0.1)
    csv = pd.read_csv(tmp_path / "tables" / "nyuv2.csv").set_index("name")  # the same numbers as the files
    expected = tuple(csv.loc["db_mtl", ["mr", "mr_paper", "delta_m"]])
    assert (db["mr"], db_paper["mr"], db["delta_m"]) == pytest.approx(expected)
    assert not math.isnan(db["delta_m"]) and db["seeds"] == 1
    assert rows[("EW", "ours")]["status"] == "missing" and rows[("EW", "ours")]["delta_p"] is None
    assert rows[("EW", "paper")]["delta_p"] is not None  # the paper's row is there without our run
    # one seed: no interval, said so; the reproduction verdict and rank probabilities travel along
    assert db["interval"] == "1 seed: no interval" and db["delta_p_lo"] is None
    assert db["repro"] == "reproduced" and db["p_first"] is not None
    assert rows[("DB-MTL", "paper")]["interval"] == "± over 3 seeds"
    assert run.kwargs["config"]["reproduction"].startswith("reproduced: ")
    images = {k: v["image"] for k, v in payload.items() if k.startswith("plots/")}
    pngs = [str(p) for p in paths if p.suffix == ".png"]
    assert images and sorted(images.values()) == sorted(pngs) and "plots/delta_p_per_task" in images


def test_no_table_run_without_the_wandb_logger(tmp_path, monkeypatch):
    calls: list[FakeRun] = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    write_paper_runs(tmp_path / "runs", "nyuv2")
    for logger in (None, {"name": "none"}, {**LOGGER, "mode": "disabled", "dir": str(tmp_path)}):
        regenerate("nyuv2", tmp_path / "runs", tmp_path / "tables", quiet=True, plots=False, logger=logger)
    assert calls == []


def test_tables_command_writes_an_offline_table_run(tmp_path, monkeypatch, capsys):
    """The real wandb, offline, no server: the offline run directory holds the table file."""
    pytest.importorskip("wandb")
    from mtl.report.tables import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_paper_runs(tmp_path / "runs", "nyuv2")
    wandb_dir = tmp_path / "wandb"
    assert main(["nyuv2", "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "tables"),
                 f"logger.dir={wandb_dir}", "logger.mode=offline"]) == 0
    assert "W&B table run:" in capsys.readouterr().out
    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*")
    (table_file,) = run_dir.glob("files/media/table/table_*.table.json")
    table = json.loads(table_file.read_text())
    assert "delta_p" in table["columns"] and "mr" in table["columns"]
    sources = {(r[0], r[1]) for r in table["data"]}
    assert ("DB-MTL", "ours") in sources and ("DB-MTL", "paper") in sources
    assert list(run_dir.glob("files/media/images/plots/delta_p_per_task*.png"))
    assert list(run_dir.glob("*.wandb"))  # what `wandb sync` uploads


def test_table_of_a_benchmark_without_paper_or_runs_is_empty_not_an_error(tmp_path):
    from mtl.report.tables import build_table, to_markdown

    df = build_table("synthetic", tmp_path / "runs")
    assert df.empty and "| method | seeds | t0 mae |" in to_markdown(df)
