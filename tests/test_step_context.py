"""The step context: a method declares what it needs beyond the losses (`Method.needs`) and the
trainer hands over exactly that (`StepContext`), with no method named in the trainer."""
import pytest
import torch

from mtl import methods
from mtl.errors import InvalidCombination
from mtl.methods.base import NEEDS, LossWeighting
from mtl.methods.registry import _REGISTRY, register

SEEN: list = []


def _probe(name, needs):
    class Probe(LossWeighting):
        def weights(self, losses):
            ctx = self.step_context
            SEEN.append(("backward", None if ctx is None else {
                "features": ctx.features is not None, "sample_losses": None if ctx.sample_losses is None
                else tuple(ctx.sample_losses.shape), "val_batch": ctx.val_batch is not None,
                "passes": ctx.loss_fn is not None}))
            return torch.ones_like(losses)

        def before_step(self, ctx):
            losses = ctx.loss_fn(ctx.model, ctx.val_batch if ctx.val_batch is not None else ctx.batch)
            SEEN.append(("before_step", tuple(losses.shape)))

    Probe.name, Probe.needs = name, frozenset(needs)
    return register(Probe)


@pytest.mark.parametrize("needs", [(), ("features",), ("sample_losses",), ("val_batch", "passes"), NEEDS])
def test_trainer_provides_exactly_what_is_declared(train, needs):
    name = "probe_" + "_".join(needs)
    _probe(name, needs)
    SEEN.clear()
    try:
        # method=ew's config with the probe's name: the probe takes EW's keys (loss_transform, rep_grad)
        train(["benchmark=synthetic", "method=ew", f"method.name={name}", "trainer.epochs=1",
               "trainer.max_steps_per_epoch=2", "benchmark.build.n_train=256", "run.checkpoint=false"])
    finally:
        _REGISTRY.pop(name, None)
    backward = [s for k, s in SEEN if k == "backward"]
    before = [s for k, s in SEEN if k == "before_step"]
    assert len(backward) == 2
    if not needs:
        assert backward == [None, None] and before == []
        return
    got = backward[0]
    assert got["features"] == ("features" in needs)
    assert (got["sample_losses"] is not None) == ("sample_losses" in needs)
    if got["sample_losses"] is not None:
        assert got["sample_losses"][1] == 3  # [B, T]
    assert got["val_batch"] == ("val_batch" in needs) and got["passes"] == ("passes" in needs or "val_batch" in needs)
    assert before == ([(3,), (3,)] if set(needs) & {"passes", "val_batch"} else [])


def test_unknown_need_is_refused_at_registration():
    class Bad(LossWeighting):
        name = "bad_needs"
        needs = frozenset({"telepathy"})
    with pytest.raises(ValueError, match="telepathy"):
        register(Bad)


def test_what_a_benchmark_cannot_provide_is_refused_before_training(train):
    from mtl.benchmarks.qm9 import QM9Benchmark
    from mtl.benchmarks.synthetic import Synthetic
    from mtl.benchmarks.toy import Toy
    assert not Toy.has_sample_losses(Toy.__new__(Toy))
    assert all(c.has_sample_losses(c.__new__(c)) for c in (Synthetic, QM9Benchmark))
    with pytest.raises(InvalidCombination, match="ntkmtl_sr needs (the shared representation|per-sample losses)"):
        train(["benchmark=toy", "method=ntkmtl_sr", "trainer.epochs=1", "trainer.max_steps_per_epoch=1"])


@pytest.mark.parametrize("name", ["auto_lambda", "moml", "forum", "ntkmtl_sr"])
def test_context_methods_train_through_the_trainer(train, name):
    import json
    path = train(["benchmark=synthetic", f"method={name}", "trainer.epochs=2", "trainer.max_steps_per_epoch=3",
                  "benchmark.build.n_train=256"])
    summary = json.loads((path / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["delta_p"] == summary["delta_p"]


def test_2025_campaigns_add_the_new_baselines_after_the_papers_21():
    from mtl.benchmarks.paper import campaign_methods
    from mtl.campaigns.workflows import load_experiment, sweep_params

    paper = campaign_methods()
    new = ["config", "dualproj", "uw_so", "go4align", "ntkmtl", "auto_lambda", "moml", "forum"]
    for bench, extra in (("qm9", ["ntkmtl_sr"]), ("office31", [])):
        params = sweep_params(load_experiment(f"reproduce_{bench}_2025"))
        assert params["method"] == [*paper, *new, *extra] and params["benchmark"] == [bench]
        assert set(params["method"]) <= set(methods.available())


def test_docs_step_context_example_runs():
    from tests.test_readme import code_blocks
    block = next(b for b in code_blocks("python") if "class InverseSpread" in b)
    scope: dict = {}
    try:
        exec(block, scope)
        # per-sample spreads: std(0, 1, 2, 3) = 1.290994, std(1, 1, 1, 1) = 0
        torch.testing.assert_close(scope["info"]["weights"], torch.tensor([1 / 2.290994, 1.0]), atol=1e-6, rtol=0)
        assert scope["w"].grad is not None
    finally:
        _REGISTRY.pop("inverse_spread", None)


@pytest.mark.parametrize("part", [{"loss": "auto_lambda"}, {"loss": "moml"}, {"loss": "forum"}, {"grad": "ntkmtl_sr"}])
def test_combinations_refuse_parts_that_need_a_context(part):
    with pytest.raises(InvalidCombination, match="step context"):
        methods.create("combo", num_tasks=3, **part)
