"""`make demo`'s script end to end at toy scale: runs, Δp table, plot."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_table_and_writes_plot(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.main(["--benchmark", "synthetic", "--methods", "ew", "db_mtl", "--root", str(tmp_path / "runs"),
               "--tables", str(tmp_path / "tables"), "trainer.epochs=1", "benchmark.build.n_train=128",
               "trainer.progress=false"])
    out = capsys.readouterr().out
    assert "| ew |" in out and "| db_mtl |" in out and "Δp" in out
    assert (tmp_path / "tables" / "demo_synthetic.md").exists()
    assert (tmp_path / "tables" / "demo_synthetic.png").stat().st_size > 1000
