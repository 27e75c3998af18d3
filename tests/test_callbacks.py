"""Callbacks around the training loop (mtl/run/callbacks.py): the order in which the trainer calls the
hooks, fresh, resumed after a crash, and stopped and resumed mid-epoch; how `trainer.callbacks`
entries are checked before anything is written."""
import json

import pytest
import torch

from mtl.errors import InvalidValue, Preempted
from mtl.run.testing import callbacks, kill_after_epoch, recorder, signal_after_steps
from tests.test_campaign import SHORT, cli, run_dir

STEPS = 4  # n_train=256 at batch size 64


def hooks(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def epoch_calls(epoch, first_step, done=0):
    """The hooks of one whole epoch whose first step taken here is the run's `first_step`-th."""
    steps = [{"hook": "on_step_end", "step": s} for s in range(first_step, first_step + STEPS - done)]
    return [{"hook": "on_epoch_start", "epoch": epoch, "total": STEPS, "done": done}, *steps,
            {"hook": "on_steps_end", "epoch": epoch},
            {"hook": "on_epoch_end", "epoch": epoch, "record_epoch": epoch, "history": epoch + 1}]


def test_hooks_run_in_order(train, tmp_path):
    log = tmp_path / "hooks.jsonl"
    train([*SHORT, "trainer.epochs=2", recorder(log)])
    assert hooks(log) == [
        {"hook": "on_fit_start", "epoch": 0, "global_step": 0},
        *epoch_calls(0, 1), *epoch_calls(1, 1 + STEPS),
        {"hook": "on_fit_end", "epochs": 2, "steps": 2 * STEPS},
        {"hook": "on_close"}]


def test_resumed_run_starts_at_the_epoch_after_the_checkpoint(tmp_path):
    common = [*SHORT, "trainer.epochs=3", f"run.root={tmp_path / 'runs'}"]
    killed, resumed = tmp_path / "killed.jsonl", tmp_path / "resumed.jsonl"
    # callbacks run in their listed order: the recorder sees epoch 0's end before the kill
    entries = [f"mtl.run.testing.Recorder,path:'{killed}'", "mtl.run.testing.KillAfterEpoch,epoch:0"]
    assert cli(*common, callbacks(*entries)).returncode == -9
    # SIGKILL right after epoch 0's hooks: nothing more runs, on_close included
    assert hooks(killed) == [{"hook": "on_fit_start", "epoch": 0, "global_step": 0}, *epoch_calls(0, 1)]
    r = cli(*common, recorder(resumed))
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr[-2000:]
    assert hooks(resumed) == [
        {"hook": "on_fit_start", "epoch": 1, "global_step": STEPS},
        *epoch_calls(1, STEPS + 1), *epoch_calls(2, 2 * STEPS + 1),
        {"hook": "on_fit_end", "epochs": 3, "steps": 3 * STEPS},
        {"hook": "on_close"}]


def test_preempted_mid_epoch_then_resumed_within_the_epoch(train, run_root, tmp_path):
    cut, resumed = tmp_path / "cut.jsonl", tmp_path / "resumed.jsonl"
    common = [*SHORT, "trainer.epochs=2"]
    # the signal after the run's 6th step: the 2nd epoch (1-based in messages), step 2 of 4
    with pytest.raises(Preempted, match="epoch 2 step 2"):
        train([*common, callbacks(f"mtl.run.testing.Recorder,path:'{cut}'", "mtl.run.testing.SignalAfterSteps,steps:6")])
    assert hooks(cut)[-4:] == [
        {"hook": "on_step_end", "step": 6}, {"hook": "on_steps_end", "epoch": 1},
        {"hook": "on_preempt", "epoch": 1, "steps": 2}, {"hook": "on_close"}]
    assert not any(h["hook"] in ("on_fit_end", "on_epoch_end") and h.get("epoch") == 1 for h in hooks(cut))
    ckpt = torch.load(run_dir(run_root) / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["partial"]["steps"] == 2
    train([*common, recorder(resumed)])
    assert hooks(resumed) == [
        {"hook": "on_fit_start", "epoch": 1, "global_step": 6},
        *epoch_calls(1, 7, done=2),
        {"hook": "on_fit_end", "epochs": 2, "steps": 2 * STEPS},
        {"hook": "on_close"}]


def test_signal_after_an_epoch_whose_checkpoint_was_not_due_still_checkpoints(train, run_root):
    # the signal after the last step of epoch 0: the epoch ends (evaluation included), then the
    # run stops; checkpoint_every=5 would not have saved epoch 0
    with pytest.raises(Preempted, match="the end of epoch 1"):
        train([*SHORT, "trainer.epochs=3", "trainer.checkpoint_every=5", signal_after_steps(STEPS)])
    ckpt = torch.load(run_dir(run_root) / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["partial"] is None and len(ckpt["history"]) == 1


def test_kill_after_epoch_override_composes():
    from mtl.config.compose import compose

    cfg = compose([*SHORT, kill_after_epoch(1)])
    assert list(cfg.trainer.callbacks) == [{"_target_": "mtl.run.testing.KillAfterEpoch", "epoch": 1}]
    assert list(compose(SHORT).trainer.callbacks) == []  # none by default


@pytest.mark.parametrize("override,match", [
    ("trainer.callbacks=7", r"trainer.callbacks=7: must be a list"),
    ("trainer.callbacks=[mtl.run.testing.Recorder]", r"trainer.callbacks\[0\].*name the callback class with _target_"),
    ("trainer.callbacks=[{_target_:mtl.run.testing.NoSuchThing}]",
     r"trainer.callbacks\[0\]: mtl.run.testing.NoSuchThing cannot be created .*check the class path"),
    ("trainer.callbacks=[{_target_:mtl.run.testing.KillAfterEpoch}]",
     r"trainer.callbacks\[0\]: mtl.run.testing.KillAfterEpoch cannot be created .*arguments"),
    ("trainer.callbacks=[{_target_:collections.OrderedDict}]",
     r"trainer.callbacks\[0\]: collections.OrderedDict is a OrderedDict, not a mtl.run.callbacks.Callback"),
])
def test_bad_callback_entries_stop_before_anything_is_written(train, run_root, override, match):
    with pytest.raises(InvalidValue, match=match):
        train([*SHORT, override])
    assert not run_root.exists()
