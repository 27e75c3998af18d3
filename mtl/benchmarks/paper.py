"""The DB-MTL paper's tables (results/paper/*.csv) in our names: which CSV belongs to which
benchmark, which paper column is which `task/metric`, which paper method is which registry name.

Kept as data so a renamed task or a new benchmark is a one-line change. Benchmarks without an
entry (synthetic, qm9_small, toy, ...) simply have no paper column in the tables.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from mtl.paths import CONFIG_DIR, project_root


PAPER_DIR = project_root() / "results" / "paper"

# paper method name -> registry name (configs/method/<name>.yaml); STL is the per-task reference row
METHODS: dict[str, str] = {
    "STL": "stl", "EW": "ew", "GLS": "gls", "RLW": "rlw", "UW": "uw", "DWA": "dwa", "IMTL-L": "imtl_l",
    "IGBv2": "igbv2", "MGDA": "mgda", "GradNorm": "gradnorm", "PCGrad": "pcgrad", "GradDrop": "graddrop",
    "GradVac": "gradvac", "IMTL-G": "imtl_g", "CAGrad": "cagrad", "MTAdam": "mtadam", "Nash-MTL": "nash_mtl",
    "MetaBalance": "metabalance", "MoCo": "moco", "Aligned-MTL": "aligned_mtl", "IMTL": "imtl",
    "DB-MTL": "db_mtl",
}
DISPLAY: dict[str, str] = {v: k for k, v in METHODS.items()}  # registry name -> paper name

# The methods a paper campaign trains (every experiment/reproduce_<bench>.yaml sweeps this file)
METHOD_SET = CONFIG_DIR / "methods" / "paper.yaml"


def campaign_methods() -> list[str]:
    """Registry names of the methods every reproduce_<bench> campaign trains, in the paper's row
    order: configs/methods/paper.yaml (the one list; STL is trained separately, per task)."""
    import yaml

    return [m.strip() for m in str(yaml.safe_load(METHOD_SET.read_text())["method"]).split(",") if m.strip()]

_DENSE = {"mIoU": ("segmentation", "mIoU"), "PAcc": ("segmentation", "PAcc"),
          "AErr": ("depth", "AErr"), "RErr": ("depth", "RErr")}
_NORMAL = {c: ("normal", c) for c in ("Mean", "MED", "Within11.25", "Within22.5", "Within30")}


@dataclass(frozen=True)
class PaperTable:
    """One benchmark's paper table: CSV file, column -> (task, metric), Δp columns."""

    csv: str
    title: str
    columns: dict[str, tuple[str, str]]
    delta_p: str = "delta_p"
    delta_p_pm: str | None = "delta_p_pm"
    extra: dict[str, str] = field(default_factory=dict)  # our derived column -> paper column (e.g. avg)
    task_metric: str | None = None  # set: every other CSV column is a task of that name, of this metric

    def column_map(self, paper_dir: Path = PAPER_DIR) -> dict[str, tuple[str, str]]:
        """Paper column -> (task, metric). With `task_metric` the task columns are the CSV's own
        (QM9's 11 targets: their names are written in mtl/benchmarks/qm9.py and the paper's CSV,
        not here; tests check the two agree)."""
        if self.task_metric is None:
            return dict(self.columns)
        with open(paper_dir / self.csv, newline="") as f:
            header = next(csv.reader(f))
        taken = {"method", self.delta_p, self.delta_p_pm, *self.columns, *self.extra.values()}
        return {**self.columns, **{c: (c, self.task_metric) for c in header if c not in taken}}


TABLES: dict[str, PaperTable] = {
    "nyuv2": PaperTable("dbmtl_table1_nyuv2_deeplab.csv", "DB-MTL Table 1: NYUv2, DeepLabV3+",
                        {**_DENSE, **_NORMAL}),
    "cityscapes": PaperTable("dbmtl_table2_cityscapes_deeplab.csv", "DB-MTL Table 2: Cityscapes, DeepLabV3+",
                             dict(_DENSE)),
    "qm9": PaperTable("dbmtl_table3_qm9.csv", "DB-MTL Table 3: QM9 (test MAE)", {}, task_metric="mae"),
    "office31": PaperTable(
        "dbmtl_table4_office.csv", "DB-MTL Table 4: Office-31, ResNet-18 (test accuracy %)",
        {"office31_amazon": ("amazon", "acc"), "office31_dslr": ("dslr", "acc"),
         "office31_webcam": ("webcam", "acc")},
        delta_p="office31_delta_p", delta_p_pm="office31_delta_p_pm", extra={"avg": "office31_avg"}),
    "officehome": PaperTable(
        "dbmtl_table4_office.csv", "DB-MTL Table 4: Office-Home, ResNet-18 (test accuracy %)",
        {"officehome_art": ("art", "acc"), "officehome_clipart": ("clipart", "acc"),
         "officehome_product": ("product", "acc"), "officehome_real": ("real_world", "acc")},
        delta_p="officehome_delta_p", delta_p_pm="officehome_delta_p_pm", extra={"avg": "officehome_avg"}),
    "nyuv2_segnet": PaperTable("dbmtl_table6_nyuv2_segnet.csv", "DB-MTL Table 6: NYUv2, SegNet-MTAN",
                               {**_DENSE, **_NORMAL}, delta_p_pm=None),
}


def paper_table(benchmark: str) -> PaperTable | None:
    return TABLES.get(benchmark)


def _decimals(text: str) -> int:
    text = text.strip().lstrip("+-")
    return len(text.split(".")[1]) if "." in text else 0


@dataclass
class PaperRows:
    """A paper table in our names: rows[registry name][key] = value, keys `task/metric`, `delta_p`,
    `delta_p_pm` and `extra` names; `decimals[key]` = printed precision; `order` = paper row order."""

    table: PaperTable
    rows: dict[str, dict[str, float]]
    decimals: dict[str, int]
    order: list[str]


def load_paper(benchmark: str, paper_dir: Path = PAPER_DIR) -> PaperRows | None:
    """The benchmark's paper rows, or None if the paper has no table for it. Empty cells are absent."""
    table = paper_table(benchmark)
    if table is None:
        return None
    keys = {col: f"{t}/{m}" for col, (t, m) in table.column_map(paper_dir).items()}
    keys[table.delta_p] = "delta_p"
    if table.delta_p_pm:
        keys[table.delta_p_pm] = "delta_p_pm"
    keys.update({col: name for name, col in table.extra.items()})
    rows: dict[str, dict[str, float]] = {}
    decimals: dict[str, int] = {}
    order: list[str] = []
    with open(paper_dir / table.csv, newline="") as f:
        for rec in csv.DictReader(f):
            if rec["method"] not in METHODS:
                raise KeyError(f"{table.csv}: paper method {rec['method']!r} has no entry in mtl.benchmarks.paper.METHODS")
            name = METHODS[rec["method"]]
            order.append(name)
            row = {}
            for col, key in keys.items():
                cell = (rec.get(col) or "").strip()
                if col not in rec:
                    raise KeyError(f"{table.csv} has no column {col!r} (mtl.benchmarks.paper.TABLES[{benchmark!r}])")
                if cell:
                    row[key] = float(cell)
                    decimals[key] = max(decimals.get(key, 0), _decimals(cell))
            rows[name] = row
    return PaperRows(table, rows, decimals, order)


def display_name(method: str) -> str:
    """Paper spelling of a registry name (folder names with a tag keep our spelling)."""
    return DISPLAY.get(method, method)
