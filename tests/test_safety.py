"""Nothing stale, nothing unsafe (issue #20, sections 1-3): files read from a run directory or a
data cache never run code, a run directory never leaves run.root, a finished run or a checkpoint is
used only for the settings and the run it belongs to, and no failure replaces a good result.

The command-line cases are in tests/test_error_catalogue.py (RUN_CASES, SAFETY_CASES); these are
the ones that need a closer look (marker files, API errors, tables, compare)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch


class Evil:
    """A pickle that runs `touch <marker>` when it is loaded with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class EvilSubprocess(Evil):
    """The same through subprocess, a module torch does not block outright: PyG's loader retries such
    a file with weights_only=False."""

    def __reduce__(self):
        import subprocess

        return subprocess.call, (["touch", self.marker],)


def evil_pickle(path: Path, marker: Path, payload=None) -> None:
    torch.save(payload if payload is not None else {"model": {}, "epoch": 0, "history": [], "x": Evil(marker)}, path)


# ---- 1. checkpoints ------------------------------------------------------------------------------
def test_a_malicious_checkpoint_does_not_run(tmp_path):
    from mtl.errors import DamagedFile
    from mtl.run.rundir import RunDir

    marker = tmp_path / "PWNED"
    evil_pickle(tmp_path / "checkpoint.pt", marker)
    with pytest.raises(DamagedFile, match="not a checkpoint of this suite .*posix.system.*nothing of it was run"):
        RunDir(tmp_path).load_checkpoint()
    evil_pickle(tmp_path / "checkpoint.pt", marker, {"model": {}, "epoch": 0, "history": [], "x": EvilSubprocess(marker)})
    with pytest.raises(DamagedFile, match=r"not a checkpoint of this suite .*\.call, "):
        RunDir(tmp_path).load_checkpoint()
    assert not marker.exists()


def test_out_of_memory_while_loading_an_intact_checkpoint_is_not_damage(tmp_path, monkeypatch):
    from mtl.errors import OutOfMemory
    from mtl.run import rundir

    torch.save({"model": {}, "epoch": 0, "history": []}, tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 1181116006 bytes.")

    monkeypatch.setattr(rundir.torch, "load", oom)
    with pytest.raises(OutOfMemory) as err:
        rundir.RunDir(tmp_path).load_checkpoint()
    msg = str(err.value)
    assert "out of memory" in msg and "damaged" not in msg and "cannot be read" not in msg and "\n" not in msg
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


# ---- 1. the QM9 cache (PyG) ----------------------------------------------------------------------
def test_planted_pyg_pickles_in_the_qm9_cache_do_not_run(tmp_path):
    import mtl.datasets.qm9 as Q

    root = tmp_path / "qm9"
    ds = Q.QM9(root=root, limit=20, progress=False)
    processed = root / "processed"
    assert not (processed / "pre_transform.pt").exists() and not (processed / "pre_filter.pt").exists()
    marker = tmp_path / "PWNED"
    for name in ("pre_transform.pt", "pre_filter.pt"):  # PyG reads these with weights_only=False
        evil_pickle(processed / name, marker, payload=Evil(marker))
    again = Q.QM9(root=root, limit=20, progress=False)
    assert len(again) == len(ds) and not marker.exists()


def test_a_planted_qm9_storage_file_does_not_run(tmp_path):
    """PyG's own loader retries a file that needs unlisted globals with weights_only=False."""
    from torch_geometric.data import Data

    import mtl.datasets.qm9 as Q
    from mtl.errors import DatasetDamaged

    root = tmp_path / "qm9"
    ds = Q.QM9(root=root, limit=20, progress=False)
    marker = tmp_path / "PWNED"
    evil_pickle(Path(ds.processed_paths[0]), marker, payload=({"x": EvilSubprocess(marker)}, {}, Data))
    with pytest.raises(DatasetDamaged, match="cannot be read"):
        Q.QM9(root=root, limit=20, progress=False)
    assert not marker.exists()


# ---- 2. selection never picks on NaN metrics ------------------------------------------------------
def test_selection_refuses_when_every_epoch_scores_nan():
    from mtl.scoring.selection import select

    nan = float("nan")
    history = [{"epoch": e, "val": {"t": {"m": nan}}, "test": {"t": {"m": 1.0}}, "val_delta_p": nan} for e in range(3)]
    with pytest.raises(ValueError, match="every val metric of every epoch is NaN"):
        select(history, "best_val", lambda m: {}, baseline="stl")
    # a zero epoch-0 base makes LibMTL's improvement NaN for every epoch: epoch 0 wins, as in LibMTL
    zero = [{"epoch": e, "val": {"t": {"m": 0.0}}, "test": {"t": {"m": 1.0}}} for e in range(2)]
    tasks = [type("T", (), {"name": "t", "metrics": [type("M", (), {"name": "m", "higher_is_better": True})]})]
    from mtl.scoring.selection import improvement

    chosen = select(zero, "best_val", lambda m: {}, baseline="epoch0", improvement_fn=lambda n, b: improvement(n, b, tasks))
    assert chosen["epoch"] == 0


# ---- 2. tables and compare never mix settings ------------------------------------------------------
from tests.test_error_catalogue import (  # noqa: E402  (the catalogue's harness: finished run, hashes, one line)
    assert_one_error_line, digest, finished_run, place_finished, run_command, REPO)

_ = finished_run  # a module-scoped fixture, used by name below


def edit_config(run: Path, **changes) -> None:
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for dotted, value in changes.items():
        node = cfg
        *head, leaf = dotted.split("__")
        for k in head:
            node = node[k]
        node[leaf] = value
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_tables_refuse_to_average_seeds_of_different_settings(tmp_path, finished_run):
    from mtl.errors import MixedSettings
    from mtl.report.tables import build_table

    root = tmp_path / "runs"
    _, seed1 = place_finished(finished_run, root, seeds=(0, 1))
    assert build_table("synthetic", root).set_index("name").loc["ew", "seeds"] == 2  # same settings: one row
    edit_config(seed1, trainer__epochs=30, benchmark__protocol__optimizer__lr=0.1)
    with pytest.raises(MixedSettings, match=r"synthetic/ew: its seeds were trained with different result-changing "
                                            r"settings \(benchmark.protocol.optimizer.lr: .*trainer.epochs: 1 \(seed 0\), "
                                            r"30 \(seed 1\)"):
        build_table("synthetic", root)
    before = digest(root)
    r = run_command(["scripts/tables.py", "synthetic", "--root", str(root), "--out", str(tmp_path / "tables"),
                     "--no-plots", "logger=none"], {}, REPO)
    assert_one_error_line(r, 2, "MixedSettings")
    assert not (tmp_path / "tables").exists() and digest(root) == before


def test_bookkeeping_keys_do_not_split_a_row(tmp_path, finished_run):
    from mtl.report.tables import build_table

    root = tmp_path / "runs"
    _, seed1 = place_finished(finished_run, root, seeds=(0, 1))
    edit_config(seed1, run__root="/elsewhere", trainer__progress=True, device="cuda", logger__name="wandb")
    assert build_table("synthetic", root).set_index("name").loc["ew", "seeds"] == 2


def test_compare_refuses_baselines_of_another_protocol(tmp_path, finished_run):
    root = tmp_path / "runs"
    place_finished(finished_run, root)
    cand = root / "synthetic" / "db_mtl" / "seed0"
    shutil.copytree(finished_run, cand)
    summary = json.loads((cand / "summary.json").read_text())
    (cand / "summary.json").write_text(json.dumps({**summary, "method": "db_mtl"}))
    edit_config(cand, method__name="db_mtl", trainer__epochs=30)
    before = digest(root)
    r = run_command(["scripts/compare.py", "--method", "db_mtl", "--bench", "synthetic", "--no-run", "--root",
                     str(root), "--against", "ours"], {}, REPO)
    assert_one_error_line(r, 2, "different protocol settings (trainer.epochs: 30 (run db_mtl), 1 (run ew))")
    assert digest(root) == before


# ---- 3. tables never replace a good table with an empty one ----------------------------------------
def test_tables_with_a_mistyped_root_keep_the_good_table(tmp_path, finished_run):
    root, out = tmp_path / "runs", tmp_path / "tables"
    place_finished(finished_run, root)
    args = ["synthetic", "--out", str(out), "--no-plots", "logger=none"]
    r = run_command(["scripts/tables.py", *args, "--root", str(root)], {}, REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    good = digest(out)
    assert "synthetic.csv" in good
    r = run_command(["scripts/tables.py", *args, "--root", str(tmp_path / "rusn")], {}, REPO)
    assert_one_error_line(r, 2, f"no finished runs of synthetic under {tmp_path / 'rusn'}")
    assert digest(out) == good


# ---- 3. a forced re-run keeps the finished result until the new one is complete ----------------------
def test_forced_rerun_that_fails_leaves_the_finished_run_in_tables(tmp_path, finished_run):
    from mtl.errors import NonFiniteLoss
    from mtl.report.runs import read_runs
    from mtl.run.entry import run
    from tests.test_error_catalogue import COMMON, SYNTHETIC

    root = tmp_path / "runs"
    (path,) = place_finished(finished_run, root)
    before = digest(path)
    with pytest.raises(NonFiniteLoss):
        run([*COMMON, *SYNTHETIC, f"run.root={root}", "method=ew", "seed=0", "run.force=true",
             "benchmark.protocol.optimizer.lr=1e20"])
    after = digest(path)
    assert {k: after.get(k) for k in before if not k.startswith(".")} == {k: v for k, v in before.items()
                                                                       if not k.startswith(".")}
    assert list(read_runs(root)["path"]) == [str(path)]
    # the same forced re-run, now with good settings, replaces it (the old summary kept beside it)
    old = (path / "summary.json").read_text()
    run([*COMMON, *SYNTHETIC, f"run.root={root}", "method=ew", "seed=0", "run.force=true",
         "benchmark.protocol.optimizer.lr=0.01"])
    assert (path / "summary.replaced.json").read_text() == old and not (path / ".rerun").exists()
    assert "0.01" in (path / "config.yaml").read_text()


def test_a_promotion_stopped_half_way_is_completed_on_the_next_start(tmp_path):
    from mtl.run.rundir import RunDir

    final = RunDir(tmp_path / "seed0").create()
    for name in ("summary.json", "config.yaml", "metrics.jsonl", "checkpoint.pt"):
        (final.path / name).write_text(f"old {name}")
    stage = final.staging()
    for name in ("summary.json", "config.yaml", "metrics.jsonl", "checkpoint.pt"):
        (stage.path / name).write_text(f"new {name}")
    os.replace(stage.path / "config.yaml", final.path / "config.yaml")  # killed after the first rename
    assert final.pending_promotion
    final.finish_promotion()
    assert {p.name: p.read_text() for p in final.path.iterdir() if p.is_file()} == {
        "summary.json": "new summary.json", "config.yaml": "new config.yaml", "metrics.jsonl": "new metrics.jsonl",
        "checkpoint.pt": "new checkpoint.pt", "summary.replaced.json": "old summary.json"}
    assert not stage.path.exists() and not final.pending_promotion


def test_mixed_settings_in_a_row_not_shown_do_not_stop_the_table(tmp_path, finished_run):
    from mtl.errors import MixedSettings
    from mtl.report.tables import build_table

    root = tmp_path / "runs"
    place_finished(finished_run, root)
    sweep = root / "synthetic" / "ew_lr"
    for s, lr in ((0, 0.1), (1, 0.2)):
        shutil.copytree(finished_run, sweep / f"seed{s}")
        summary = json.loads((sweep / f"seed{s}" / "summary.json").read_text())
        (sweep / f"seed{s}" / "summary.json").write_text(json.dumps({**summary, "seed": s, "tag": "_lr"}))
        edit_config(sweep / f"seed{s}", benchmark__protocol__optimizer__lr=lr)
    assert "ew_lr" not in set(build_table("synthetic", root)["name"])  # tagged rows are not shown by default
    with pytest.raises(MixedSettings, match="ew_lr: its seeds"):
        build_table("synthetic", root, include_tags=True)


def test_a_checkpoint_of_the_previous_format_is_refused_with_its_reason(tmp_path):
    """Before weights_only, the numpy RNG state was stored as a numpy array."""
    import numpy as np

    from mtl.errors import DamagedFile
    from mtl.run.rundir import RunDir

    torch.save({"model": {}, "epoch": 0, "history": [], "rng": {"numpy": np.random.get_state()}}, tmp_path / "checkpoint.pt")
    with pytest.raises(DamagedFile, match="older version of this suite .*numpy.*run.force=true"):
        RunDir(tmp_path).load_checkpoint()


@pytest.mark.parametrize("tag,message", [
    ("/../../x", "run.tag='/../../x': may hold only"), ("/sub", "run.tag='/sub'"), ("..", "run.tag='..'"),
    ("_" + "a" * 299, "run.tag: 300 characters long"), ("_${nosuch.key}", "run.tag / run.dir: cannot be resolved"),
    ("_beta0.5_sqrtk", None), ("_lr1e-3", None), ("", None)])
def test_run_path_checks(tag, message):
    from mtl.config.compose import compose
    from mtl.errors import InvalidValue
    from mtl.run.validate import check_run_path

    cfg = compose([f"run.tag={tag}", "run.root=/tmp/mtl-runs"])
    if message is None:
        check_run_path(cfg)
        return
    with pytest.raises(InvalidValue) as err:
        check_run_path(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
