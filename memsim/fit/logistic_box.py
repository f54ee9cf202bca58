"""The uniform prior on the unit box seen on the logit scale: the prior ``memsim infer`` trains
its flow under (memsim.fit.infer, "The estimator").

In: the box's dimension and a torch device. Out: a torch distribution that sbi can move
between devices (sbi's posterior calls ``prior.to(device)`` in place, and refuses a prior
without it). A module of its own because it subclasses a torch class: memsim.fit.infer imports
torch only when a command trains or samples.
"""

from __future__ import annotations

import torch
from torch.distributions import Independent, TransformedDistribution, Uniform
from torch.distributions.transforms import SigmoidTransform


class LogisticBox(TransformedDistribution):
    """``logit(u)``, ``u`` uniform on the ``dim``-dimensional unit box: independent standard
    logistics, defined on the whole real line."""

    def __init__(self, dim: int, device: str | torch.device = "cpu"):
        self.dim = int(dim)
        zeros = torch.zeros(self.dim, device=device)
        base = Independent(Uniform(zeros, torch.ones_like(zeros)), 1)
        super().__init__(base, [SigmoidTransform().inv])

    def to(self, device: str | torch.device) -> LogisticBox:
        """Move to ``device`` in place (as sbi's ``posterior.to`` expects); returns self."""
        self.__init__(self.dim, device)
        return self
