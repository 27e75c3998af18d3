"""The QM9 MPNN of nash-mtl / LibMTL (a modification of PyG's examples/qm9_nn_conv.py).

Both references use the same encoder: Linear(11, 64) + ReLU; three rounds (shared weights) of
NNConv(64, 64, edge net Linear(5, 128)-ReLU-Linear(128, 64*64), aggr="mean") + ReLU + GRU;
Set2Set(64, 3 steps) -> 128; Linear(128, 64) + ReLU. The 64-d graph feature is the shared
representation (rep-grad splits there); each target gets its own Linear(64, 1) head.

Speed: the references call NNConv three times, so its edge network (Linear(128, 4096) on every
directed pair of the complete graph: ~90% of the cost) runs three times on the same input and
gives the same E x 64 x 64 weights each time. With `share_edge_weights=True` (default) we run it
once per forward and reuse the weights in all three rounds, computing NNConv's own formula
(mean_j x_j W_ji + lin(x_i) + bias) with the same parameters. Outputs and gradients equal the
reference path up to float rounding (tested), at about a third of the time and memory;
`share_edge_weights=False` calls NNConv exactly as the references do.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import NNConv, Set2Set
from torch_geometric.utils import scatter

from mtl.models.base import HPS


class MPNNEncoder(nn.Module):
    """Graph batch (x [N, 11], edge_index, edge_attr [E, 5], batch) -> [B, dim] graph features."""

    def __init__(self, in_dim: int = 11, edge_dim: int = 5, dim: int = 64, edge_hidden: int = 128,
                 rounds: int = 3, set2set_steps: int = 3, share_edge_weights: bool = True):
        super().__init__()
        self.rounds = rounds
        self.share_edge_weights = share_edge_weights
        self.lin0 = nn.Linear(in_dim, dim)
        edge_net = nn.Sequential(nn.Linear(edge_dim, edge_hidden), nn.ReLU(), nn.Linear(edge_hidden, dim * dim))
        self.conv = NNConv(dim, dim, edge_net, aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * dim, dim)
        self.out_dim = dim

    def forward(self, data) -> torch.Tensor:
        out = F.relu(self.lin0(data.x))
        h = out.unsqueeze(0)  # GRU hidden state starts from the lin0 output
        weight = None
        if self.share_edge_weights:
            dim = self.conv.out_channels
            weight = self.conv.nn(data.edge_attr).view(-1, dim, dim)
        for _ in range(self.rounds):
            conv = self.conv(out, data.edge_index, data.edge_attr) if weight is None \
                else self._conv_shared(out, data.edge_index, weight)
            m = F.relu(conv)
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        out = self.set2set(out, data.batch)
        return F.relu(self.lin1(out))

    def _conv_shared(self, x: torch.Tensor, edge_index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """NNConv(aggr="mean") with precomputed per-edge weights: messages flow from
        edge_index[0] (j) to edge_index[1] (i)."""
        src, dst = edge_index
        msg = torch.bmm(x[src].unsqueeze(1), weight).squeeze(1)
        out = scatter(msg, dst, dim=0, dim_size=x.size(0), reduce="mean")
        return out + self.conv.lin(x) + self.conv.bias


def mpnn_hps(task_names: Sequence[str], dim: int = 64, **encoder_kwargs) -> HPS:
    """HPS model: shared MPNN encoder, one Linear(dim, 1) head per target."""
    encoder = MPNNEncoder(dim=dim, **encoder_kwargs)
    return HPS(encoder, {t: nn.Linear(dim, 1) for t in task_names})
