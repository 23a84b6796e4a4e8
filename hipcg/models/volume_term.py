"""The volume term as a trainable torch module (the physics: :mod:`hipcg.volume`)."""

from __future__ import annotations

import torch

from ..volume import VolumeTerm

#: atm per unit of the parameters: Adam's steps (~lr) then move the term by ~lr x 1000 atm,
#: the scale of the pressure errors force matching leaves
SCALE_ATM = 1000.0


class VolumeTermModule(torch.nn.Module):
    """P_V(v) = p0 - K (v - v0) / v0 with p0 and K learnable; v0 fixed (Å^3 per bead)."""

    def __init__(self, term: VolumeTerm):
        super().__init__()
        self.p0 = torch.nn.Parameter(torch.tensor(term.p0 / SCALE_ATM, dtype=torch.float64))
        self.bulk = torch.nn.Parameter(torch.tensor(term.bulk / SCALE_ATM, dtype=torch.float64))
        self.register_buffer("v0", torch.tensor(float(term.v0), dtype=torch.float64))

    def pressure(self, volume_per_bead: torch.Tensor) -> torch.Tensor:
        """P_V in atm."""
        x = (volume_per_bead - self.v0) / self.v0
        return SCALE_ATM * (self.p0 - self.bulk * x)

    def term(self) -> VolumeTerm:
        return VolumeTerm(float(self.p0.detach()) * SCALE_ATM, float(self.bulk.detach()) * SCALE_ATM,
                          float(self.v0))

    def set(self, term: VolumeTerm) -> None:
        with torch.no_grad():
            self.p0.fill_(term.p0 / SCALE_ATM)
            self.bulk.fill_(term.bulk / SCALE_ATM)
            self.v0.fill_(term.v0)
