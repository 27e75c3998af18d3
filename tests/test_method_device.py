"""Method state follows the method's device: a checkpoint is loaded on the CPU, and a run resumed on
a GPU must take its next step there. PyTorch's `meta` device stands in for CUDA: a tensor left on
the CPU shows up as a device mismatch exactly as it would on a GPU."""
import io

import pytest
import torch

from mtl import methods
from tests.test_method_properties import ALL, T, Tiny, batches, make, run_epochs, step

META = torch.device("meta")
# Parameters loaded into a meta module are a documented no-op; only the extra state is under test here.
pytestmark = pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")


def checkpoint_round_trip(state):
    """As the trainer saves and reloads it: torch.save, then torch.load(map_location='cpu')."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)  # as RunDir.load_checkpoint


def state_tensors(obj, path="state"):
    """(path, tensor) for every tensor in a method's extra state; optimizer state dicts are left out
    (torch.optim places them itself: its `step` counters stay on the CPU by design)."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict) and "__numpy__" in obj:
        return  # a numpy array of the state (host memory by nature), stored as a CPU tensor for weights_only
    elif isinstance(obj, dict) and "param_groups" not in obj:
        for k, v in obj.items():
            yield from state_tensors(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from state_tensors(v, f"{path}[{i}]")


def assert_on(method, device):
    for module in method.modules():
        if hasattr(module, "get_extra_state") and isinstance(module, methods.Method):
            for path, t in state_tensors(module.get_extra_state()):
                assert t.device == device, f"{method.name}: {path} on {t.device}, expected {device}"
    for name, t in [*method.named_parameters(), *method.named_buffers()]:
        assert t.device == device, f"{method.name}: {name} on {t.device}"


def trained_state(name):
    model, method = make(name)
    torch.manual_seed(3)
    run_epochs(model, method)
    return checkpoint_round_trip(method.state_dict())


def meta_step(method):
    torch.manual_seed(0)
    model = Tiny().to(META)
    data = [(x.to(META), y.to(META)) for x, y in batches(method.batches_per_step, seed=4)]
    step(model, method, data)


def steps_on_meta(name) -> bool:
    """Whether a fresh method can step on `meta` at all (solver-based methods read values on the host)."""
    try:
        method = methods.create(name, num_tasks=T).to(META)
        method.on_epoch_start(0)
        meta_step(method)
        return True
    except (NotImplementedError, RuntimeError):
        return False


@pytest.mark.parametrize("name", ALL)
def test_restored_state_moves_to_the_methods_device(name):
    state = trained_state(name)
    placed_first = methods.create(name, num_tasks=T).to(META)  # the trainer: method.to(device), then load
    placed_first.load_state_dict(state)
    assert_on(placed_first, META)
    loaded_first = methods.create(name, num_tasks=T)  # a user loop: load, then .to(device)
    loaded_first.load_state_dict(state)
    loaded_first.to(META)
    assert_on(loaded_first, META)


@pytest.mark.parametrize("name", [n for n in ALL if steps_on_meta(n)])
def test_restored_method_takes_a_step_on_its_device(name):
    method = methods.create(name, num_tasks=T).to(META)
    method.load_state_dict(trained_state(name))
    meta_step(method)  # raises "Expected all tensors to be on the same device" if state stayed on the CPU


def test_stateful_methods_named_by_the_resume_bug_step_on_meta():
    # DB-MTL's EMA buffer failed the first step after a GPU resume (ExcessMTL reads values on the host)
    stepping = {n for n in ALL if steps_on_meta(n)}
    assert {"db_mtl", "db_mtl_rep", "ew", "uw", "famo"} <= stepping, sorted(stepping)
