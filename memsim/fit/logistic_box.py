"""The uniform prior on the unit box seen on the logit scale: the prior ``memsim infer`` trains
its flow under (memsim.fit.infer, "The estimator").

In: the box's dimension and a torch device. Out: a torch distribution that sbi can move
between devices (sbi's posterior calls ``prior.to(device)`` in place, and refuses a prior
without it) and that draws from the CPU's random generator wherever it lives. sbi draws from
the prior while it sets up training (its checks), before it splits the simulations into
training and validation sets and initialises the network from torch's CPU generator: a
prior that drew from the GPU's generator would leave the CPU's where it was and so give
another split and other initial weights on a GPU than on a CPU with the same seed. A module
of its own because it subclasses a torch class: memsim.fit.infer imports torch only when a
command trains or samples.
"""

from __future__ import annotations

import torch
from torch.distributions import Independent, TransformedDistribution, Uniform
from torch.distributions.transforms import SigmoidTransform


def _box(dim: int, device) -> TransformedDistribution:
    zeros = torch.zeros(dim, device=device)
    return TransformedDistribution(
        Independent(Uniform(zeros, torch.ones_like(zeros)), 1), [SigmoidTransform().inv]
    )


class LogisticBox(TransformedDistribution):
    """``logit(u)``, ``u`` uniform on the ``dim``-dimensional unit box: independent standard
    logistics, defined on the whole real line. Densities are computed on its device; draws are
    made on the CPU (the same numbers as a CPU twin's, from the CPU's generator) and moved."""

    def __init__(self, dim: int, device: str | torch.device = "cpu"):
        self.dim = int(dim)
        self._cpu = _box(self.dim, "cpu")
        box = _box(self.dim, device)
        super().__init__(box.base_dist, box.transforms)

    @property
    def device(self) -> torch.device:
        return self.base_dist.base_dist.low.device

    def rsample(self, sample_shape=()) -> torch.Tensor:
        return self._cpu.rsample(torch.Size(sample_shape)).to(self.device)

    def sample(self, sample_shape=()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def to(self, device: str | torch.device) -> LogisticBox:
        """Move to ``device`` in place (as sbi's ``posterior.to`` expects); returns self."""
        self.__init__(self.dim, device)
        return self
