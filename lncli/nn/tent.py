"""TENT: online test-time adaptation of the norm layers' affine parameters by entropy minimisation.

Wang, Shelhamer, Liu, Olshausen and Darrell, "Tent: Fully Test-Time Adaptation by Entropy
Minimization" (ICLR 2021). For each test batch, in stream order, the model predicts from one
forward with test-batch statistics; then Adam takes a step on the mean entropy of that forward's
softmax, over the norm layers' affine parameters only (every head of a
:class:`~lncli.nn.LocalNorm2d`). Nothing else changes: the other weights are frozen and the
running statistics are not updated (the model stays in eval mode; its norm layers take their
statistics from the test batch through their ``test_stats``).

:class:`Tent` keeps one adapted state per *stream* (e.g. one per noise x severity cell of a
sweep): the affine values and Adam's moments, both small. Each stream starts from the weights
the model had when :class:`Tent` was made, so streams never leak into each other, whatever
order their batches arrive in.

Differences from the reference code (``DequanWang/tent``): the model stays in eval mode (TENT
calls ``train()``, which would also switch on dropout; batch statistics come from
``test_stats`` here), and with ``steps > 1`` the prediction is the first forward's, made before
any step on the batch (TENT returns the forward before its last step); with one step, the
default, the two agree.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lncli.nn.localnorm import LocalNorm2d

__all__ = ["Tent", "affine_parameters", "softmax_entropy"]


def affine_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The norm layers' affine parameters TENT adapts, in module order.

    Args:
        model: a model with :class:`~lncli.nn.LocalNorm2d` layers (their heads, every head) and/or
            plain ``nn.BatchNorm2d`` layers (their weight and bias).

    Returns:
        The parameters (layers without an affine contribute none).
    """
    params: list[nn.Parameter] = []
    for m in model.modules():
        if isinstance(m, LocalNorm2d):
            # weight/bias are the frozen source affine, never in the forward: the heads are the affine.
            params += [p for p in (m.head_weight, m.head_bias) if p is not None]
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            params += [m.weight, m.bias]
    return params


def softmax_entropy(logits: Tensor) -> Tensor:
    """The entropy of each row's softmax, in nats.

    Args:
        logits: (N, K) class scores.

    Returns:
        (N,) entropies, -sum_k p_k log p_k.
    """
    return -(logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1)


@dataclass
class _Stream:
    """One stream's adapted state: the affine values (while another stream runs) and its optimiser."""

    values: list[Tensor]  # detached copies, in affine_parameters order
    optimizer: torch.optim.Adam  # over the shared parameter objects: its moments are this stream's own


class Tent:
    """Online TENT over one model, with one independent adapted state per stream.

    The model is changed in place (pass a copy when the original must stay as it is): it is put
    in eval mode, every parameter but the affine ones stops requiring a gradient, and the affine
    values are swapped per stream.

    Args:
        model: the classifier (logits (N, K)), its norm layers set to test-batch statistics.
        lr: Adam's learning rate (TENT's CIFAR setting is 1e-3).
        steps: Adam steps per test batch (TENT takes one).

    Raises:
        ValueError: no affine parameter to adapt, a learning rate <= 0 or steps < 1.
    """

    def __init__(self, model: nn.Module, lr: float, steps: int = 1):
        self.params = affine_parameters(model)
        if not self.params:
            raise ValueError("TENT needs norm layers with affine parameters; this model has none")
        if not lr > 0 or steps < 1:
            raise ValueError(f"TENT needs lr > 0 and steps >= 1, got lr={lr}, steps={steps}")
        self.model = model.eval()
        self.lr, self.steps = float(lr), int(steps)
        model.requires_grad_(False)
        for p in self.params:
            p.requires_grad_(True)
        self._initial = [p.detach().clone() for p in self.params]
        self._streams: dict[Hashable, _Stream] = {}
        self._current: Hashable | None = None

    def reset(self) -> None:
        """Forget every stream: the model gets its initial weights back, and so does every stream's next batch."""
        with torch.inference_mode(False):
            self._switch(None)
        self._streams.clear()

    def _switch(self, stream: Hashable | None) -> _Stream | None:
        """Park the current stream's affine values and load ``stream``'s (a new stream starts afresh)."""
        if stream == self._current and stream is not None:
            return self._streams[stream]
        with torch.no_grad():
            if self._current is not None:
                self._streams[self._current].values = [p.detach().clone() for p in self.params]
            state = None
            if stream is not None:
                state = self._streams.get(stream)
                if state is None:
                    state = _Stream([v.clone() for v in self._initial], torch.optim.Adam(self.params, lr=self.lr))
                    self._streams[stream] = state
                for p, v in zip(self.params, state.values):
                    p.copy_(v)
            else:
                for p, v in zip(self.params, self._initial):
                    p.copy_(v)
        self._current = stream
        return state

    def __call__(self, x: Tensor, stream: Hashable = 0) -> Tensor:
        """Predict a batch of ``stream``, then adapt that stream's state on it.

        Runs with gradients even inside ``torch.inference_mode`` (the sweep's context).

        Args:
            x: (N, C, H, W) normalised test batch.
            stream: which independent stream the batch belongs to.

        Returns:
            (N, K) logits of the forward before any step on this batch (detached).
        """
        with torch.inference_mode(False), torch.enable_grad():
            state = self._switch(stream)  # here: copies made in inference mode could not be used with grad
            assert state is not None  # a stream was given
            x = x.clone()  # an inference tensor cannot be saved for the backward
            logits = self.model(x)
            out = logits.detach()
            for step in range(self.steps):
                if step:
                    logits = self.model(x)
                loss = softmax_entropy(logits).mean()
                state.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                state.optimizer.step()
        return out
