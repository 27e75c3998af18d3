"""Issue #20 §4-5: stops that say what and how (signals anywhere, one line, exit 3), campaigns that go
on past a failed job and check every job before the first starts, one-line errors instead of
tracebacks, the closing result line, and `logger=wandb` offline touching no network."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mtl.errors import EXIT_PREEMPTED, EXIT_USER_ERROR
from mtl.run.testing import callbacks, signal_after_steps

REPO = Path(__file__).resolve().parents[1]
SHORT = ["benchmark=synthetic", "benchmark.build.n_train=256", "logger=none", "trainer.progress=false"]


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WANDB") and k != "HYDRA_FULL_ERROR"}
    e.update({"PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", **extra})
    return e


def cli(*args, cwd=REPO, timeout=300, **extra):
    return subprocess.run([sys.executable, "-m", "mtl.train", *args], cwd=cwd, env=env(**extra),
                          capture_output=True, text=True, timeout=timeout)


def script(name, *args, cwd=REPO, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def error_lines(r):
    return [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]


# ---- 1. signals: one line, exit 3, wherever they arrive -----------------------------------------
def test_ctrl_c_mid_epoch_saves_a_checkpoint_and_exits_3(tmp_path):
    r = cli(*SHORT, "trainer.epochs=3", f"run.root={tmp_path}", signal_after_steps(6, "SIGINT"))
    assert r.returncode == EXIT_PREEMPTED, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "SIGINT: checkpoint saved at epoch 2 step 2" in lines[0], r.stderr
    run = tmp_path / "synthetic" / "ew" / "seed0"
    assert (run / "checkpoint.pt").exists() and not (run / "summary.json").exists()
    again = cli(*SHORT, "trainer.epochs=3", f"run.root={tmp_path}")
    assert again.returncode == 0 and "resuming" in again.stdout and "in epoch 2 after step 2" in again.stdout


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_during_setup_exits_3_with_one_line(tmp_path, sig):
    r = cli(*SHORT, f"run.root={tmp_path}", callbacks(f"mtl.run.testing.SignalAt,hook:init,signal:{sig}"))
    assert r.returncode == EXIT_PREEMPTED, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{sig} during setup" in lines[0] and "same command" in lines[0], r.stderr
    assert not (tmp_path / "synthetic" / "ew" / "seed0" / "summary.json").exists()


def test_signal_after_the_last_epoch_exits_3_and_the_rerun_finds_it_finished(tmp_path):
    r = cli(*SHORT, "trainer.epochs=1", f"run.root={tmp_path}",
            callbacks("mtl.run.testing.SignalAt,hook:on_fit_end,signal:SIGTERM"))
    assert r.returncode == EXIT_PREEMPTED, r.stderr[-2000:]
    assert "SIGTERM during the end of the run" in r.stderr and "Traceback" not in r.stderr
    again = cli(*SHORT, "trainer.epochs=1", f"run.root={tmp_path}")
    assert again.returncode == 0 and "is finished" in again.stdout


@pytest.mark.parametrize("delay", [0.4, 0.8, 1.5, 3.0])  # importing hydra, composing, importing torch, ...
def test_signal_during_startup_exits_3(tmp_path, delay):
    proc = subprocess.Popen([sys.executable, "-m", "mtl.train", *SHORT, f"run.root={tmp_path}"], cwd=REPO,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip(f"the run finished within {delay} s")
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert "SIGTERM" in err and "same command" in err


def test_requeue_recipe_of_the_docs_requeues(tmp_path):
    """`[ $rc -eq 3 ] && requeue`: the shell sees 3 for a stop during setup."""
    cmd = (f"{sys.executable} -m mtl.train {' '.join(SHORT)} run.root={tmp_path} "
           f"'{callbacks('mtl.run.testing.SignalAt,hook:init,signal:SIGTERM')}'; rc=$?; "
           f"[ $rc -eq 3 ] && echo requeue")
    r = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert r.stdout.strip().endswith("requeue"), r.stderr[-1500:]


# ---- 2. campaigns: check once before launching; one failed job does not stop the others ---------
def test_sweep_on_a_cpu_machine_is_one_line_and_writes_nothing(tmp_path):
    r = script("sweep.py", "beta", "--bench", "nyuv2", "--seeds", "0,1,2", "--out", str(tmp_path / "sweeps"),
               "logger=none", f"run.root={tmp_path / 'runs'}", cwd=tmp_path)
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert r.stderr.strip().count("\n") == 0 and "NoGPU" in r.stderr and "device=cpu" in r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())


def test_compare_with_an_invalid_value_is_one_line(tmp_path):
    r = script("compare.py", "--method", "db_mtl", "--bench", "synthetic", "--root", str(tmp_path / "runs"),
               "method.beta=2", "logger=none", f"run.root={tmp_path / 'runs'}", cwd=tmp_path)
    assert r.returncode == EXIT_USER_ERROR and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert error_lines(r) == [r.stderr.strip()] and "method.beta: db_mtl needs a number in [0, 1), got 2" in r.stderr
    assert not list(tmp_path.iterdir())


def test_reproduce_with_an_unknown_method_is_one_line(tmp_path):
    r = script("reproduce.py", "demo", "--methods", "ew,nosuch", "logger=none", f"run.root={tmp_path / 'runs'}",
               "--out", str(tmp_path / "tables"), cwd=tmp_path)
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert len(error_lines(r)) == 1 and "method=nosuch" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())


def test_slurm_launcher_without_slurm_is_one_line(tmp_path):
    r = script("compare.py", "--method", "ew", "--bench", "synthetic", "--launcher", "slurm", "logger=none",
               f"run.root={tmp_path / 'runs'}", cwd=tmp_path)
    assert r.returncode == EXIT_USER_ERROR and "launcher=slurm: there is no SLURM here" in r.stderr, r.stderr
    r = cli("-m", "launcher=slurm", *SHORT, f"run.root={tmp_path / 'runs'}", "seed=0,1", cwd=tmp_path)
    assert r.returncode == EXIT_USER_ERROR and error_lines(r) and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_a_failed_job_does_not_stop_the_multirun(tmp_path):
    r = cli("-m", *SHORT, "trainer.epochs=1", "method=db_mtl", "method.beta=2,0.5", f"run.root={tmp_path / 'runs'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}", cwd=tmp_path)
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert (tmp_path / "runs" / "synthetic" / "db_mtl" / "seed0" / "summary.json").exists()  # beta=0.5 ran
    report = r.stderr[r.stderr.index("1 job(s) of this multirun failed"):].splitlines()
    assert len(report) == 2 and "method.beta=2" in report[1] and "needs a number in [0, 1)" in report[1]
    assert not (tmp_path / "multirun").exists() or not list((tmp_path / "multirun").glob(".mtl-failures*"))


def test_a_locked_job_does_not_stop_the_multirun(tmp_path):
    from mtl.run.rundir import RunDir

    root = tmp_path / "runs"
    holder = textwrap.dedent(f"""
        import sys, time
        from mtl.run.rundir import RunDir
        with RunDir({str(root / 'synthetic' / 'ew' / 'seed0')!r}).lock():
            print('locked', flush=True); time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        r = cli("-m", *SHORT, "trainer.epochs=1", "seed=0,1", f"run.root={root}",
                f"hydra.sweep.dir={tmp_path / 'multirun'}", cwd=tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert RunDir(root / "synthetic" / "ew" / "seed1").finished  # the job after the locked one ran
    assert "RunLocked" in r.stderr and "1 job(s) of this multirun failed" in r.stderr


# ---- 3./4. one-line errors and messages ---------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["method=pcgradd"], "did you mean method=pcgrad"),
    (["benchmark=nyu"], "did you mean benchmark=nyuv2"),
    (["lr=0.01"], "did you mean benchmark.protocol.optimizer.lr"),
    (["+lr=0.01"], "did you mean benchmark.protocol.optimizer.lr"),
    (["seed=99999999999"], "seed=99999999999: must be an integer from 0 to 4294967295"),
    (["device=mps"], "device=mps: not supported"),
    (["run.tag=${nosuch}"], "Interpolation key 'nosuch' not found"),
    (["benchmark.protocol.reference.metrics.t0.mae=0"], "benchmark.protocol.reference.metrics.t0.mae=0: Δp and Δm "
                                                        "divide by the STL reference"),
])
def test_one_line_and_no_hydra_class_names(tmp_path, args, message):
    r = cli(*SHORT, f"run.root={tmp_path}", *args)
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert error_lines(r) == [r.stderr.strip()] and message in r.stderr, r.stderr[-2000:]
    assert "Exception" not in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.rglob(".hydra_run"))


def test_no_gpu_comes_before_the_heavy_imports_and_leaves_no_stub(tmp_path):
    from mtl.run.device import gpu_surely_absent

    if not gpu_surely_absent():
        pytest.skip("a machine with an NVIDIA driver")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mtl.train", "benchmark=nyuv2", "logger=none",
                        f"run.root={tmp_path}"], cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert r.returncode == EXIT_USER_ERROR and "NoGPU" in r.stderr
    imported = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    assert "torch" not in imported, f"torch was imported before the NoGPU line ({seconds:.1f} s)"
    assert not any(tmp_path.iterdir())  # no stub .hydra_run/ (nothing at all)


def test_out_of_memory_is_one_line_with_the_fix(tmp_path):
    r = cli(*SHORT, f"run.root={tmp_path}", callbacks("mtl.run.testing.OutOfMemoryAfterSteps,steps:2"))
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert error_lines(r) == [r.stderr.strip()] and "Traceback" not in r.stderr
    line = error_lines(r)[0]
    assert line.startswith("error: OutOfMemory:") and "benchmark.build.batch_size=" in line \
        and "trainer.precision=bf16" in line and "in epoch 1" in line


def test_a_run_ends_with_one_closing_line(tmp_path):
    r = cli(*SHORT, "trainer.epochs=2", f"run.root={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "synthetic" / "ew" / "seed0" / "summary.json").read_text())
    assert last.startswith(f"[mtl] done: epoch {summary['selected_epoch'] + 1} of 2 selected by best_val")
    assert f"test Δp {summary['delta_p']:+.2f} %" in last and f"Δm {summary['delta_m']:+.2f} %" in last
    assert str(tmp_path / "synthetic" / "ew" / "seed0") in last
    epochs = [ln.split("|")[0].strip() for ln in r.stdout.splitlines() if ln.startswith("[mtl] epoch")]
    assert epochs == ["[mtl] epoch 1", "[mtl] epoch 2"]  # 1-based, like the closing line


def test_validate_precisions_match_the_precision_module():
    from mtl.run import precision, validate

    assert validate.PRECISIONS == precision.PRECISIONS


# ---- 5. privacy: logger=wandb offline makes no network access ----------------------------------
GUARD = textwrap.dedent("""
    import os, socket, sys, traceback
    LOG = os.environ["NET_GUARD_LOG"]

    def local(host):
        h = str(host)
        return h in ("localhost", "", "0.0.0.0", "::1") or h.startswith("127.") or h.startswith("/")

    def note(kind, what):
        with open(LOG, "a") as f:
            f.write(f"{kind} {what}\\n" + "".join(traceback.format_stack(limit=12)) + "\\n")

    def guard(orig, kind, pick):
        def wrapper(*a, **k):
            target = pick(*a)
            if not local(target):
                note(kind, target)
                raise OSError(101, f"network blocked by the test: {target}")
            return orig(*a, **k)
        return wrapper

    socket.getaddrinfo = guard(socket.getaddrinfo, "DNS", lambda host, *a: host)
    socket.gethostbyname = guard(socket.gethostbyname, "DNS", lambda host: host)
    socket.gethostbyname_ex = guard(socket.gethostbyname_ex, "DNS", lambda host: host)
    _connect = socket.socket.connect
    def connect(self, addr):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not local(addr[0]):
            note("CONNECT", addr)
            raise OSError(101, f"network blocked by the test: {addr}")
        return _connect(self, addr)
    socket.socket.connect = connect
    socket.socket.connect_ex = lambda self, addr: (connect(self, addr), 0)[1]

    from mtl.run.entry import run
    path = run(sys.argv[2:])
    print("OK", path)
""")


def no_network_prefix() -> list[str]:
    """`unshare -rn` (a network namespace with only loopback) where the machine allows it: then not
    even wandb's service process (not Python, so not under the socket guard) could reach anything."""
    import shutil

    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return []
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up; exec "$@"', "sh"] if probe.returncode == 0 else []


def test_wandb_offline_makes_no_network_access(tmp_path):
    """The socket guard records every DNS lookup or connection to a host that is not this machine.
    No proxy variables: with HTTPS_PROXY=127.0.0.1 a request would go to the (local) proxy and the
    lookup of wandb's analytics host (which happened before this fix) would stay hidden."""
    (tmp_path / "guarded.py").write_text(GUARD)
    log = tmp_path / "network.log"
    e = env(NET_GUARD_LOG=str(log), WANDB_SILENT="true", WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"))
    for key in ("WANDB_MODE", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        e.pop(key, None)  # logger.mode=offline (the default of logger=wandb) decides
    r = subprocess.run([*no_network_prefix(), sys.executable, str(tmp_path / "guarded.py"), "-", *SHORT, "trainer.epochs=2",
                        f"run.root={tmp_path / 'runs'}", "logger=wandb", "logger.mode=offline",
                        f"logger.dir={tmp_path / 'wandb'}"], cwd=REPO, env=e, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
    assert list((tmp_path / "wandb" / "wandb").glob("offline-run-*/*.wandb"))  # it did log, offline
    assert not log.exists(), "network access with logger.mode=offline:\n" + log.read_text()[:3000]


def test_wandb_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "wandb").write_text("not a folder")
    r = cli(*SHORT, f"run.root={tmp_path / 'runs'}", "logger=wandb", f"logger.dir={tmp_path / 'wandb'}",
            WANDB_MODE="offline", WANDB_SILENT="true")
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "is a file, not a folder" in error_lines(r)[0]


def test_wandb_on_a_full_disk_is_one_line_not_14000(tmp_path):
    """A real full disk (a 256 KiB tmpfs, filled) under logger.dir: before, wandb's log handlers
    printed ~14,000 lines of "--- Logging error ---" tracebacks and the run exited 1."""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("no mount namespaces here")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = (f'mount -t tmpfs -o size=256k tmpfs {disk} && mkdir {disk}/w && '
             f'(dd if=/dev/zero of={disk}/fill bs=1k count=1000 2>/dev/null; true) && exec "$@"')
    e = env(WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"), WANDB_MODE="offline")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", mount, "sh", sys.executable, "-m", "mtl.train", *SHORT,
                        "trainer.epochs=1", "logger=wandb", "logger.mode=offline", f"logger.dir={disk}/w",
                        f"run.root={tmp_path / 'runs'}"], cwd=REPO, env=e, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == EXIT_USER_ERROR, r.stderr[-2000:]
    assert error_lines(r) == [r.stderr.strip()], r.stderr[-2000:]
    assert "LoggerError" in r.stderr and "the disk is full" in r.stderr and "logger=none" in r.stderr
    assert not (tmp_path / "runs").exists()  # checked before anything was written


def test_wandb_full_disk_is_one_line(tmp_path, monkeypatch):
    import errno

    import wandb

    from mtl.errors import LoggerError
    from mtl.run import loggers

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wandb, "init", full)
    with pytest.raises(LoggerError, match=r"logger.dir=.*W&B cannot write there: the disk is full.*logger=none"):
        loggers._init(mode="offline", dir=str(tmp_path / "wandb"), init_timeout=5, project="p")


# ---- run directory: what is in the way, leftovers, fsync -----------------------------------------
def test_read_only_run_root_is_one_line(tmp_path, monkeypatch, capsys):
    """Root bypasses permissions here, so the read-only folder is what os.access reports."""
    import mtl.run.rundir as rundir
    from mtl.train import precheck

    real = os.access
    monkeypatch.setattr(rundir.os, "access", lambda p, mode: False if str(p).startswith(str(tmp_path)) else real(p, mode))
    with pytest.raises(SystemExit) as exit_:
        precheck([*SHORT, f"run.root={tmp_path / 'ro'}"])
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: StorageError: cannot write in") and "is not writable" in err and "\n" not in err


def test_stale_tmp_files_of_dead_writers_are_removed(tmp_path):
    from mtl.run.rundir import RunDir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = RunDir(tmp_path / "run").create()
        stale = run.path / f"checkpoint.pt.{dead.pid}.tmp"
        live = run.path / f"checkpoint.pt.{alive.pid}.tmp"
        other = run.path / "notes.tmp"
        for p in (stale, live, other):
            p.write_bytes(b"partial")
        with run.lock():
            pass
        assert not stale.exists() and live.exists() and other.exists()
    finally:
        alive.kill()
        alive.wait()


def test_folders_are_fsynced_after_a_rename(tmp_path, monkeypatch):
    import stat

    import mtl.run.rundir as rundir

    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(rundir.os, "fsync", fsync)
    rundir.RunDir(tmp_path).write_summary({"seed": 0})
    assert synced == [False, True]  # the file's data, then the folder holding the rename


def test_ray_launcher_shuts_ray_down_after_the_sweep(monkeypatch, tmp_path):
    import types

    from omegaconf import OmegaConf

    from hydra_plugins.mtl_ray_launcher import ray_launcher
    from hydra_plugins.mtl_ray_launcher.ray_launcher import RayGPULauncher

    calls = []
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **k: calls.append("init"),
                                 shutdown=lambda: calls.append("shutdown"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    launcher = RayGPULauncher(gpus_per_job=0)
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    launcher.hydra_context = launcher.task_function = object()

    def fail(*a):
        raise RuntimeError("a job failed")

    monkeypatch.setattr(RayGPULauncher, "_launch", lambda self, ray, jobs, idx: fail())
    monkeypatch.setattr(ray_launcher, "setup_globals", lambda: None)
    with pytest.raises(RuntimeError):
        launcher.launch([["seed=0"]], 0)
    assert calls == ["init", "shutdown"]


# ---- Makefile: ARGS= and make help --------------------------------------------------------------
def test_make_help_lists_every_target_with_one_line():
    import re

    r = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {ln.split()[1] for ln in r.stdout.splitlines() if ln.strip().startswith("make ")}
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9%-]*):", makefile, re.M)) - {"help"}
    assert targets <= listed, targets - listed
    assert all(len(ln.split(None, 2)) == 3 for ln in r.stdout.splitlines() if ln.strip().startswith("make "))


@pytest.mark.parametrize("target", ["train", "demo", "tables", "sweep-beta", "sweep-alpha", "compare",
                                    "reproduce-qm9", "reproduce-demo", "toy", "bench-step"])
def test_make_targets_pass_args_through(target):
    r = subprocess.run(["make", "-n", target, "ARGS=trainer.epochs=2 logger=none", "VIRTUAL_ENV=/nonexistent-venv"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].endswith("trainer.epochs=2 logger=none"), r.stdout
