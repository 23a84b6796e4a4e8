"""Training's per-frame pair graphs, built once and kept as compact tensors."""

from __future__ import annotations

import numpy as np
import torch

from .graph import periodic_graph


class GraphCache:
    """Each frame's pair graph (:func:`hipcg.graph.periodic_graph`) and target forces, by frame.

    Frames are named by ``ref.state`` (index into ``datasets``) and ``ref.frame``.
    """

    def __init__(self, datasets: list, cutoff: float, dtype: torch.dtype):
        self.datasets = datasets
        self.cutoff = cutoff
        self.dtype = dtype
        self._cache: dict[tuple[int, int], tuple] = {}

    def get(self, ref):
        key = (ref.state, ref.frame)
        item = self._cache.get(key)
        if item is None:
            ds = self.datasets[ref.state]
            g = periodic_graph(ds.positions[ref.frame], ds.boxes[ref.frame], ds.bead_types, self.cutoff)
            # int32 indices and training-precision vectors halve the cache; pair vectors are
            # formed in float64 first (differences of absolute coordinates lose digits in float32)
            item = (torch.as_tensor(ds.bead_types), torch.as_tensor(g.pair_first, dtype=torch.int32),
                    torch.as_tensor(g.pair_second, dtype=torch.int32),
                    torch.as_tensor(g.pair_vec).to(self.dtype),
                    torch.as_tensor(np.asarray(ds.forces[ref.frame], dtype=np.float64)).to(self.dtype))
            self._cache[key] = item
        return item

    def batch(self, refs: list, device: torch.device):
        """One graph of several frames: concatenated, bead indices offset per frame."""
        parts = [self.get(r) for r in refs]
        offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
        species = torch.cat([p[0] for p in parts])
        first = torch.cat([p[1].long() + int(o) for p, o in zip(parts, offsets)])
        second = torch.cat([p[2].long() + int(o) for p, o in zip(parts, offsets)])
        vec = torch.cat([p[3] for p in parts])
        forces = torch.cat([p[4] for p in parts])
        return (species.to(device), first.to(device), second.to(device), vec.to(device),
                forces.to(device))

    def pair_frame(self, refs: list, device: torch.device) -> torch.Tensor:
        """For every pair of :meth:`batch` (same ``refs``), the index of its frame in ``refs``."""
        counts = torch.as_tensor([len(self.get(r)[1]) for r in refs])
        return torch.repeat_interleave(torch.arange(len(refs)), counts).to(device)
