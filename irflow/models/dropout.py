"""Dropout whose mask costs half as much to draw on a CPU: the same Bernoulli(1 - p) keep mask.

``nn.Dropout`` on a CPU draws its mask with ``bernoulli_`` on a tensor of the input's type, one
scalar generator call per element: 11-12 ms for a 32 x 158 x 384 bf16 activation on this 2-core
machine, 15% of a cross-encoder training step (13 dropouts per forward pass). Comparing
``torch.rand`` (float32 uniforms, vectorised) with ``p`` draws the same mask distribution
(keep with probability 1 - p; float32 resolution, as ``bernoulli_``'s own uniform) in about half
the time, from the same default generator (so checkpoints and per-rank streams cover it).
Training draws different masks than ``nn.Dropout`` would, from the same distribution; CUDA and
evaluation mode are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class FastDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and 0.0 < self.p < 1.0 and x.device.type == "cpu") or self.inplace:
            return super().forward(x)
        keep = torch.rand(x.shape, dtype=torch.float32, device=x.device).ge_(self.p)
        return x * keep.to(x.dtype).div_(1.0 - self.p)


def use_fast_dropout(model: nn.Module) -> int:
    """Make every ``nn.Dropout`` in ``model`` a :class:`FastDropout` (same ``p``); returns how many."""
    n = 0
    for m in model.modules():
        if type(m) is nn.Dropout:
            m.__class__ = FastDropout
            n += 1
    return n
