"""The QM9 cache under concurrency: array jobs starting together on an empty cache build it once."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD = """
import os, sys, time
from mtl.datasets.qm9 import QM9
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):  # all processes start building at the same moment
    time.sleep(0.01)
ds = QM9(root=sys.argv[1], limit=300, progress=True)
print(len(ds), float(ds._data.y.sum()), flush=True)
"""


def test_concurrent_processes_build_the_cache_once(tmp_path):
    # PyG prints "Processing..." when it builds, except under pytest (PYTEST_CURRENT_TEST)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}, "PYTHONUNBUFFERED": "1"}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", LOAD, str(tmp_path), str(go)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), [err[-1500:] for _, _, err in results]
    assert len({out.splitlines()[-1] for _, out, _ in results}) == 1  # all loaded the same molecules
    builders = sum("Processing" in err for _, _, err in results)
    assert builders == 1, [err[-500:] for _, _, err in results]
    # the others either waited for the builder or, started late by the scheduler, found the cache built
    processed = tmp_path / "processed"
    assert not list(processed.glob("*.tmp"))  # temporary files were renamed into place
    assert len(list(processed.glob("qm9pack_*.pt"))) == 1 and len(list(processed.glob("qm9pack_*.json"))) == 1


def test_a_process_waits_while_another_holds_the_build_lock(tmp_path):
    from mtl.datasets.qm9 import build_lock

    with build_lock(tmp_path / "processed", verbose=False):
        p = subprocess.Popen([sys.executable, "-c", LOAD, str(tmp_path), str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        assert "waiting for it" in p.stdout.readline()  # blocked on our lock, and says so
        assert not list((tmp_path / "processed").glob("qm9pack_*.pt"))  # nothing built while we hold it
    assert p.wait(timeout=600) == 0, p.stderr.read()[-1500:]
    assert len(list((tmp_path / "processed").glob("qm9pack_*.pt"))) == 1  # built once the lock was free


def test_workflows_build_the_cache_before_jobs_start(tmp_path):
    from mtl.campaigns.workflows import Group, prepare_data

    groups = [Group(["benchmark=qm9_small"], {"method": ["ew", "uw"]}), Group(["benchmark=qm9_small", "seed=1"])]
    prepare_data(groups, [f"benchmark.build.root={tmp_path}", "benchmark.build.limit=200",
                          "benchmark.build.progress=false"])
    processed = tmp_path / "processed"
    # the cache and qm9_small's precomputed graphs (graph=bonds), nothing else
    assert len(list(processed.glob("qm9pack_*.json"))) == 1 and len(list(processed.glob("qm9pack_*.pt"))) == 2
    assert len(list(processed.glob("qm9pack_*_bonds_*.pt"))) == 1
    prepare_data([Group(["benchmark=synthetic"])])  # no shared cache: nothing to do
