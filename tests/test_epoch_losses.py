"""Epoch train losses are batch-size weighted means (LibMTL `AbsLoss._average_loss`), in the
trainer's record and in what DWA and GradNorm read, on loaders with a partial last batch."""
import numpy as np
import pytest
import torch
from torch import nn

from mtl import methods
from mtl.benchmarks.synthetic import Synthetic
from mtl.run.rundir import RunDir

SIZES = [4, 4, 2]  # 10 samples, batch 4: a partial last batch


def libmtl_average_loss(record, bs):
    """LibMTL loss.py AbsLoss._average_loss, transcribed."""
    record = np.array(record)
    bs = np.array(bs)
    return (record * bs).sum() / bs.sum()


class Net(nn.Module):
    def __init__(self, T=2):
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(3, 4)
        self.heads = nn.ModuleList(nn.Linear(4, 1) for _ in range(T))

    def losses(self, x, y):
        h = torch.tanh(self.shared(x))
        return torch.stack([((head(h).squeeze(-1) - y[:, t]) ** 2).mean() for t, head in enumerate(self.heads)])


def _epoch(method, net, data, epoch, record):
    method.on_epoch_start(epoch)
    out = []
    start = 0
    for bs in SIZES:
        x, y = data[0][start:start + bs], data[1][start:start + bs] * torch.tensor([1.0, 10.0])
        start += bs
        net.zero_grad()
        losses = net.losses(x, y)
        for t in range(len(losses)):
            record[t].append(losses[t].item())
        info = method.backward(losses, list(net.shared.parameters()), list(net.heads.parameters()), batch_size=bs)
        out.append(info)
        with torch.no_grad():  # move so epochs differ
            for p in net.parameters():
                p -= 0.05 * p.grad
    method.on_epoch_end(epoch)
    return out


def _data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 3, generator=g)
    y = torch.randn(10, 2, generator=g)
    y[-2:] *= 6.0  # the partial batch has much larger losses: plain and weighted means differ
    return x, y


def test_dwa_reads_libmtl_epoch_losses_with_partial_last_batch():
    net, data = Net(), _data()
    dwa = methods.create("dwa", num_tasks=2)
    buffers = []
    for epoch in range(2):
        record = [[], []]
        _epoch(dwa, net, data, epoch, record)
        buffers.append([libmtl_average_loss(record[t], SIZES) for t in range(2)])
        plain = [np.mean(record[t]) for t in range(2)]
        assert not np.allclose(plain, buffers[-1], rtol=1e-3)  # the check can tell them apart
    dwa.on_epoch_start(2)
    net.zero_grad()
    losses = net.losses(data[0][:4], data[1][:4])
    info = dwa.backward(losses, list(net.shared.parameters()), list(net.heads.parameters()), batch_size=4)
    # LibMTL DWA.backward at epoch 2 (T=2.0)
    buf = np.array(buffers).T  # [task, epoch]
    w_i = torch.Tensor(buf[:, 1] / buf[:, 0])
    expected = 2 * torch.softmax(w_i / 2.0, dim=-1)
    assert torch.allclose(info["weights"].float(), expected, rtol=1e-6)


def test_gradnorm_initial_losses_are_libmtl_epoch0_buffer():
    net, data = Net(), _data()
    gn = methods.create("gradnorm", num_tasks=2)
    record = [[], []]
    _epoch(gn, net, data, 0, record)
    expected = torch.tensor([libmtl_average_loss(record[t], SIZES) for t in range(2)], dtype=torch.float32)
    assert torch.allclose(gn.initial_losses, expected, rtol=1e-6)
    # epoch 1: LibMTL GradNorm's L_i = loss / train_loss_buffer[:, 0] drives the loss_scale gradient
    gn.on_epoch_start(1)
    net.zero_grad()
    gn.loss_scale.grad = None
    losses = net.losses(data[0][:4], data[1][:4])
    G = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(l, list(net.shared.parameters()),
                                                                         retain_graph=True)]) for l in losses])
    gn.backward(losses, list(net.shared.parameters()), list(net.heads.parameters()), batch_size=4)
    scale = gn.loss_scale.detach().clone().requires_grad_()
    loss_scale = 2 * torch.softmax(scale, dim=-1)
    G_per_loss = torch.norm(loss_scale.unsqueeze(1) * G, p=2, dim=-1)
    L_i = torch.Tensor([losses[t].item() / expected[t].item() for t in range(2)])
    r_i = L_i / L_i.mean()
    constant = (G_per_loss.mean(0) * r_i ** 1.5).detach()
    (G_per_loss - constant).abs().sum().backward()
    assert torch.allclose(gn.loss_scale.grad, scale.grad, rtol=1e-5, atol=1e-8)


def test_trainer_records_batch_weighted_epoch_loss(train):
    # lr 0: the network never changes, so the batch-weighted epoch mean of per-batch MSEs is the
    # MSE over the whole training set; 200 samples in batches of 64 leave a last batch of 8
    path = train(["benchmark=synthetic", "trainer.epochs=1", "benchmark.build.n_train=200",
                  "benchmark.protocol.optimizer.lr=0.0", "method=ew"])
    record = RunDir(path).read_metrics()[0]
    bench = Synthetic(n_train=200, n_val=512, n_test=512)
    bench.model.load_state_dict(torch.load(path / "checkpoint.pt", weights_only=False)["model"])
    x, y = bench.loaders["train"].dataset.tensors
    with torch.no_grad():
        out, _ = bench.model(x)
    full = [((out[f"t{t}"].squeeze(-1) - y[:, t]) ** 2).mean().item() for t in range(3)]
    assert [record["train_loss"][f"t{t}"] for t in range(3)] == pytest.approx(full, rel=1e-5)


def test_benchmark_batch_size_is_generic():
    bench = Synthetic(n_train=10, n_val=4, n_test=4, batch_size=4)
    assert [bench.batch_size(b) for b in bench.train_batches(0, 0)] == SIZES
    assert bench.batch_size({"t0": (torch.zeros(3, 2), 0), "t1": (torch.zeros(5, 2), 0), "t2": (torch.zeros(1), 0)}) \
        == [3, 5, 1]
    assert bench.batch_size(None) == 1
