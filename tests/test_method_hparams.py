"""Hyperparameter validation over the whole registry (`methods.create` checks every call against the
`hparams` each method class declares): unknown keys, wrong types, out-of-range values and unknown
choices are one-line `InvalidValue`s naming the method, the key and the value; the declarations
match the constructors and the shipped configs."""
from pathlib import Path

import pytest
import yaml

from mtl import methods
from mtl.errors import InvalidCombination, InvalidValue, MTLError, UnknownName
from mtl.methods._hparams import (Bool, Choice, Either, Int, ListOf, MethodPart, Null, Real, Str, TaskIndex,
                                  accepted_keys, default, specs)

T = 3
ALL = methods.available()
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "method"


def config(name):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert cfg.pop("name") == name
    return cfg


@pytest.mark.parametrize("name", ALL)
def test_every_constructor_key_is_declared(name):
    cls = methods.get_class(name)
    assert set(specs(cls)) == accepted_keys(cls), (
        f"{name}: declare a spec in `hparams` for every keyword argument the constructor takes")


@pytest.mark.parametrize("name", ALL)
def test_config_and_constructor_defaults_are_valid(name):
    cls = methods.get_class(name)
    methods.check(name, T, **config(name))  # the shipped YAML passes its own method's specs
    for key, spec in specs(cls).items():
        d = default(cls, key)
        if not isinstance(spec, MethodPart) and d is not None and key != "engine":
            assert spec.ok(d, T), f"{name}.{key}: constructor default {d!r} violates {spec.describe(T)}"


def _as_config(value, spec):
    """A constructor default as a YAML file writes it: tuples are lists, a part's name is {name: ...}."""
    if isinstance(spec, MethodPart) and isinstance(value, str):
        return {"name": value}
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", ALL)
def test_config_defaults_equal_constructor_defaults(name):
    """configs/method/<name>.yaml (with the paper's source comment) and the constructor say the same:
    every hyperparameter the constructor takes is in the YAML, with the constructor's default."""
    cls = methods.get_class(name)
    cfg = config(name)
    declared = specs(cls)
    assert set(cfg) == accepted_keys(cls) - {"engine"}, f"{name}: the YAML lists other keys than the constructor takes"
    for key, value in cfg.items():
        d = _as_config(default(cls, key), declared.get(key))
        assert value == d and type(value) is type(d), f"{name}.{key}: YAML {value!r}, constructor {d!r}"


def test_redundant_constructor_checks_are_gone_but_create_still_checks():
    """The declared specs are the one check of a value: a constructor does not repeat it, and
    methods.create runs it before the constructor."""
    with pytest.raises(InvalidValue, match="method.beta: db_mtl needs a number in \\[0, 1\\), got 1.0"):
        methods.create("db_mtl", num_tasks=T, beta=1.0)
    with pytest.raises(InvalidValue, match="method.task"):
        methods.create("stl", num_tasks=T, task=T)


@pytest.mark.parametrize("name", ALL)
def test_unknown_key_lists_the_keys(name):
    with pytest.raises(InvalidValue) as err:
        methods.create(name, num_tasks=T, **config(name), betta=0.5)
    msg = str(err.value)
    assert msg.startswith("method.betta: ") and name in msg and "\n" not in msg
    for key in accepted_keys(methods.get_class(name)) - {"engine"}:
        assert f"method.{key}" in msg


def bad_values(spec):
    """Values `spec` must reject, derived from its declaration."""
    if isinstance(spec, Real):
        out = ["abc", True, float("nan")]
        if spec.ge is not None:
            out.append(spec.ge - 0.5)
        if spec.gt is not None:
            out.append(spec.gt)
        if spec.le is not None:
            out.append(spec.le + 0.5)
        if spec.lt is not None:
            out.append(spec.lt)
        if isinstance(spec, Int):
            out.append(1.5)
        return out
    if isinstance(spec, TaskIndex):
        return [T, -1, "0", 0.0]
    if isinstance(spec, Bool):
        return ["maybe", 1]
    if isinstance(spec, Choice):
        return ["nosuch", 17]
    if isinstance(spec, ListOf):
        return ["abc", [], [1.0] * (T + 4)]
    if isinstance(spec, Either):
        return [v for v in ["nosuch", -7, [1.0] * (T + 4), {"x": 1}] if not spec.ok(v, T)]
    if isinstance(spec, MethodPart):
        return [["ew"], {"no_name": 1}]
    if isinstance(spec, Str):
        return [3]
    raise AssertionError(f"no bad values for {spec!r}")


CASES = [(n, k, v) for n in ALL for k, s in sorted(specs(methods.get_class(n)).items()) if k != "engine"
         for v in bad_values(s)]


@pytest.mark.parametrize("name,key,value", CASES, ids=[f"{n}.{k}={v!r}" for n, k, v in CASES])
def test_declared_ranges_are_enforced(name, key, value):
    kw = {**config(name), key: value}
    with pytest.raises(InvalidValue) as err:
        methods.create(name, num_tasks=T, **kw)
    msg = str(err.value)
    assert msg.startswith(f"method.{key}: {name} needs ") and repr(value) in msg and "\n" not in msg


@pytest.mark.parametrize("spec,good,bad", [
    (Real(ge=0, lt=1), [0, 0.5, 0.999], [1, -0.1, True, "0.5", float("inf"), None]),
    (Int(ge=1), [1, 7], [0, 1.0, True, "2"]),
    (Bool(), [True, False], [0, "true", None]),
    (Choice(0, 1, 2), [0, 2], [True, False, 3, "1"]),
    (Either(Null(), ListOf(Real(gt=0), length="num_tasks")), [None, [1, 2, 3]], [[1, 2], [1, 2, -3], "123"]),
    (TaskIndex(), [0, 2], [3, -1, True]),
])
def test_spec_semantics(spec, good, bad):
    assert all(spec.ok(v, T) for v in good)
    assert not any(spec.ok(v, T) for v in bad)


def test_messages_name_key_value_range_and_default():
    cases = [
        (dict(name="db_mtl", beta="abc"), "method.beta: db_mtl needs a number in [0, 1), got 'abc'; e.g. method.beta=0.9"),
        (dict(name="db_mtl", beta=1.5), "got 1.5"),
        (dict(name="db_mtl", alpha="foo"), "method.alpha: db_mtl needs one of max, min, mean, median or a number > 0"),
        (dict(name="db_mtl", betta=0.5), "did you mean method.beta?"),
        (dict(name="ew", loss_transform="sqrt"), "one of identity, log, got 'sqrt'"),
        (dict(name="stl", task=7), "method.task: stl needs a task index from 0 to 2 (3 tasks), got 7"),
        (dict(name="sdmgrad", lr=-1.0), "method.lr: sdmgrad needs a number > 0, got -1.0"),
        (dict(name="famo", w_lr=-0.1), "method.w_lr: famo needs a number > 0"),
        (dict(name="mtadam", ranks=[1, 2]), "a list of 3 entries"),
        (dict(name="combo", loss={"name": "igbv1", "base_epoch": -1}), "method.loss.base_epoch: igbv1 needs an integer >= 0"),
    ]
    for kw, expected in cases:
        name = kw.pop("name")
        with pytest.raises(InvalidValue, match=None) as err:
            methods.create(name, num_tasks=T, **kw)
        assert expected in str(err.value), str(err.value)


def test_combo_parts_unknown_or_wrong_kind():
    with pytest.raises(UnknownName, match=r"method.loss.name: combo has no loss-weighting method 'nosuch'; "
                                          r"choose one of .*igbv1"):
        methods.create("combo", num_tasks=T, loss={"name": "nosuch"})
    with pytest.raises(UnknownName, match="method.grad.name"):
        methods.create("combo", num_tasks=T, grad="nosuch")
    with pytest.raises(InvalidCombination, match="not a loss-weighting method"):
        methods.create("combo", num_tasks=T, loss="pcgrad")


def test_unknown_method_and_bad_num_tasks():
    with pytest.raises(UnknownName, match=r"^method: unknown method 'nosuch'; choose one of .*db_mtl") as err:
        methods.create("nosuch", num_tasks=T)
    assert isinstance(err.value, KeyError) and isinstance(err.value, MTLError)  # old callers caught KeyError
    with pytest.raises(InvalidValue, match=r"num_tasks: nash_mtl needs at least 2 tasks, got num_tasks=1"):
        methods.create("nash_mtl", num_tasks=1)
    with pytest.raises(InvalidValue, match="num_tasks: ew needs the number of tasks as an integer, got 2.0"):
        methods.create("ew", num_tasks=2.0)
    with pytest.raises(InvalidValue, match="got num_tasks=0"):
        methods.create("ew", num_tasks=0)


def test_invalid_value_is_picklable_and_one_line():
    import pickle

    err = InvalidValue("method.beta", "db_mtl needs a number in [0, 1), got 1.5", "e.g. method.beta=0.9")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "method.beta: db_mtl needs a number in [0, 1), got 1.5; e.g. method.beta=0.9"
    assert isinstance(back, ValueError) and back.where == "method.beta"


def edge_values(spec):
    """Values at the edges of what `spec` accepts (the constructor must take them too)."""
    if isinstance(spec, Real):
        out = []
        for bound, step in ((spec.ge, 0), (spec.gt, 1e-3), (spec.le, 0), (spec.lt, -1e-3)):
            if bound is not None:
                v = bound + step
                out.append(int(v) if isinstance(spec, Int) and step == 0 else v)
        return [v for v in out if spec.ok(v, T)]
    if isinstance(spec, Choice):
        return list(spec.options)
    if isinstance(spec, TaskIndex):
        return [0, T - 1]
    return []


# keys whose edge conflicts with another key's default (checked in the constructor, with its own message)
CROSS = {("igbv2", "update_after"): {"base_epoch": 0}, ("igbv2", "base_epoch"): {}}
EDGES = [(n, k, v) for n in ALL for k, s in sorted(specs(methods.get_class(n)).items()) for v in edge_values(s)]


@pytest.mark.parametrize("name,key,value", EDGES, ids=[f"{n}.{k}={v!r}" for n, k, v in EDGES])
def test_values_the_specs_accept_build(name, key, value):
    kw = {**config(name), **CROSS.get((name, key), {}), key: value}
    methods.create(name, num_tasks=T, **kw)


def test_check_before_the_number_of_tasks_is_known():
    methods.check("stl", None, task=7)  # may be fine: the benchmark decides
    methods.check("mtadam", None, ranks=[1.0, 2.0])
    with pytest.raises(InvalidValue, match="method.task: stl needs a task index >= 0, got -1"):
        methods.check("stl", None, task=-1)
    with pytest.raises(InvalidValue, match="method.beta"):
        methods.check("db_mtl", None, beta=1.5)
    with pytest.raises(InvalidValue, match="method.task: stl needs a task index from 0 to 2"):
        methods.check("stl", 3, task=7)


def test_invalid_value_raised_in_a_dataloader_worker_stays_one_line():
    from torch.utils.data import DataLoader, Dataset

    class Bad(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise InvalidValue("benchmark.build.root=/x", "/x/0.npy is a folder", "point it at the data root")

    with pytest.raises(InvalidValue) as err:
        list(DataLoader(Bad(), num_workers=1))
    assert str(err.value) == "benchmark.build.root=/x: /x/0.npy is a folder; point it at the data root"
