"""Gradient caching (GradCache; Gao et al. 2021, as in Tevatron) for in-batch objectives.

An in-batch loss couples every query with every passage of the batch, so the batch cannot simply
be split into accumulation steps: the negatives would shrink with it. GradCache keeps the whole
batch in the loss but never holds more than one chunk's activations:

1. encode the batch chunk by chunk **without** a graph (only the representations are kept);
2. compute the loss on the representations and its gradient with respect to them;
3. encode each chunk again **with** a graph and backpropagate the cached gradient of its
   representations into the encoder, one chunk at a time.

Here steps 1 and 3 are the forward and backward of one autograd function,
:func:`cached_encode`, so the training loop is unchanged: its ``loss.backward()`` computes step 2
and then runs step 3 for each encoded batch, with whatever scaling the loop applied (gradient
accumulation, fp16 loss scaling) already in the cached gradient. The random state of every chunk
(torch CPU and the device's generator: dropout) is recorded before its first pass and replayed for
the second, so both passes draw the same dropout masks; the global generators are left where the
first pass left them. Autocast is re-entered for the second pass as it was for the first.

The result equals the step with the whole batch's graph in memory, encoded in the same chunks
(tested within 1e-5 in float32, dropout on and off). Without dropout, chunking does not change the
numbers beyond float rounding, so it also equals the plain one-pass step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["cached_encode", "chunked_encode"]


def _check_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"gradcache: chunk must be a positive int, got {chunk!r}")
    return chunk


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state, device: torch.device) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


class _CachedEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, encode, chunk, device_type, autocast, anchor, *inputs):
        n = inputs[0].shape[0]
        device = inputs[0].device
        states, outs = [], []
        with torch.no_grad():
            for i in range(0, n, chunk):
                states.append(_rng_state(device))
                outs.append(encode(*(t[i:i + chunk] for t in inputs)))
        ctx.encode, ctx.chunk, ctx.states, ctx.device = encode, chunk, states, device
        ctx.device_type, ctx.autocast = device_type, autocast
        ctx.save_for_backward(*inputs)
        if not outs:
            raise ValueError("gradcache: empty batch")
        return torch.cat(outs)

    @staticmethod
    def backward(ctx, grad):
        inputs = ctx.saved_tensors
        device = ctx.device
        enabled, dtype = ctx.autocast
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=True), torch.enable_grad(), \
                torch.autocast(ctx.device_type, dtype=dtype, enabled=enabled):
            for state, i in zip(ctx.states, range(0, inputs[0].shape[0], ctx.chunk)):
                _set_rng_state(state, device)
                out = ctx.encode(*(t[i:i + ctx.chunk] for t in inputs))
                torch.autograd.backward(out, grad[i:i + ctx.chunk].to(out.dtype))
                del out  # this chunk's graph is gone before the next one is built
        return (None,) * (5 + len(inputs))


def cached_encode(encode: Callable[..., Tensor], inputs: tuple[Tensor, ...] | list[Tensor],
                  chunk: int) -> Tensor:
    """``encode(*inputs)`` for a whole batch, holding at most one chunk's activations at a time.

    ``encode`` maps tensors whose first dimension is the batch (token ids, attention mask) to
    representations ``[N, ...]`` and is applied to ``chunk`` rows at a time; it must be a pure
    function of its inputs, the parameters and the random state (dropout). The returned tensor is
    connected to the graph: a loss built on it backpropagates into the encoder's parameters, with
    each chunk re-encoded during the backward pass (see the module docstring). Parameters get
    gradients only through that re-encoding: the function itself has no tensor inputs that require
    grad (the anchor makes autograd call its backward).
    """
    _check_chunk(chunk)
    inputs = tuple(inputs)
    if not inputs or any(t.shape[0] != inputs[0].shape[0] for t in inputs):
        raise ValueError("gradcache: inputs must share their first (batch) dimension")
    device_type = inputs[0].device.type
    autocast = (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
    anchor = torch.empty(0, requires_grad=True)
    if not torch.is_grad_enabled():
        with torch.no_grad():
            return chunked_encode(encode, inputs, chunk)
    return _CachedEncode.apply(encode, chunk, device_type, autocast, anchor, *inputs)


def chunked_encode(encode: Callable[..., Tensor], inputs: tuple[Tensor, ...] | list[Tensor],
                   chunk: int) -> Tensor:
    """``encode`` chunk by chunk with the ordinary graph: the uncached reference (and teacher inference)."""
    _check_chunk(chunk)
    n = inputs[0].shape[0]
    return torch.cat([encode(*(t[i:i + chunk] for t in inputs)) for i in range(0, n, chunk)])
