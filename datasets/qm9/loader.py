"""The QM9 loader over precomputed graphs: each batch gathered in one index operation per field
(`PrecomputedGraphs.batch`), in the batches torch_geometric's DataLoader would make."""
from __future__ import annotations

import torch

from mtl.datasets.qm9.graphs import PrecomputedGraphs

class GraphBatches(torch.utils.data.Dataset):
    """Molecules `positions` of a `PrecomputedGraphs`: item i is one molecule (a Data), a list of
    item numbers is their Batch in one gather (what `batch_loader`'s sampler asks for)."""

    def __init__(self, graphs: PrecomputedGraphs, positions):
        self.graphs, self.positions = graphs, torch.as_tensor(positions, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        if isinstance(i, (list, tuple, torch.Tensor)):
            return self.graphs.batch(self.positions[torch.as_tensor(i, dtype=torch.long)].numpy())
        return self.graphs[int(self.positions[i])]


def _as_is(batch):
    return batch


def batch_loader(graphs: PrecomputedGraphs, positions, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, **kw) -> torch.utils.data.DataLoader:
    """A DataLoader of Batches of `positions`, each gathered at once (`PrecomputedGraphs.batch`).
    Its sampler is built as torch builds it for `shuffle=True` (RandomSampler on the loader's
    generator, then batches of `batch_size`), so it yields the molecules in the same batches as
    torch_geometric's DataLoader with the same generator state. kw: num_workers, pin_memory, ..."""
    data = GraphBatches(graphs, positions)
    order = (torch.utils.data.RandomSampler(data, generator=generator) if shuffle
             else torch.utils.data.SequentialSampler(data))
    return torch.utils.data.DataLoader(data, sampler=torch.utils.data.BatchSampler(order, batch_size, False),
                                       batch_size=None, collate_fn=_as_is, generator=generator, **kw)
