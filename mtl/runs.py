"""The public name of the run store (`mtl.report.runs`): `mtl.runs.read_runs(root)` reads every
finished run under `root` into one DataFrame, `read_run(run_dir)` one run."""
from mtl.report.runs import read_run, read_runs  # noqa: F401
