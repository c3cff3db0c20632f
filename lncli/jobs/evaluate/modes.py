"""Test-time modes: how a model normalises at test time, as a table from mode name to how it runs.

Test-time modes (LocalNorm, arXiv 1902.06550):

* ``running`` - statistics from training (running averages): plain BatchNorm
  inference, and LocalNorm with its running statistics and the mean of its heads.
* ``batch``   - statistics over the whole test batch (the prediction-time BN
  baseline; a BN model is converted to a one-head LocalNorm copy for this).
* ``local``   - LocalNorm statistics over groups of ``group_size`` test images
  (the checkpoint's grouping, consecutive by default); group ``k`` uses head ``k``
  (``--heads position``, the authors' behaviour) or the mean of the heads
  (``--heads mean``, order independent).
* ``single``  - statistics of each image alone, and the mean of the heads.

``running`` and ``single`` are per-image modes (:data:`lncli.nn.PER_IMAGE_STATS`): no test image
shares statistics, so none belongs to a group and the affine is the mean of LocalNorm's heads
(recorded as heads ``mean``), whatever ``--heads`` says; an image's prediction then does not depend
on its batch, its place in it or the stream's order (nor does it in ``vote``, ``majority`` and
``groupnorm``). ``--heads`` chooses among the heads where images form groups: ``local``, ``batch``,
``prior`` and ``tent``.
* ``vote``    - single-image statistics, with the softmax averaged over every
  head (lncli's voting rule, smoother than the authors': :func:`lncli.nn.vote_predict`).
* ``majority`` - single-image statistics, each head votes for its argmax class and
  the most-voted class wins, ties going to the lowest class index (the authors'
  ``np.bincount(votes).argmax()``: :func:`lncli.nn.majority_predict`).
* ``groupnorm`` - a GroupNorm model as it is: the only mode of GroupNorm checkpoints, which
  have no test-time statistics (each image is normalised by itself), and which run in it
  whatever ``--mode`` asks (:func:`modes_for`). Recorded with heads ``none`` and group size None.
* ``prior``   - Schneider et al. 2020 ("Improving robustness against common corruptions by
  covariate shift adaptation", NeurIPS): the running and the test batch's statistics mixed,
  (N * running + n * batch) / (N + n) for the mean and the variance, n the batch size and N
  ``prior_n`` (N = 0 is ``batch``, N -> infinity ``running``).
* ``tent``    - TENT (Wang et al. 2021, ICLR), online: each batch is predicted with the model's
  own test statistics (``batch`` for BN, ``local`` for LocalNorm), then Adam takes ``tent_steps``
  steps on the mean entropy of that forward's softmax, over the norm layers' affine parameters
  only (:class:`lncli.nn.Tent`). Each runner adapts its own copy of the model and keeps one
  state per stream (the sweep's cells), each starting from the checkpoint's weights.

:data:`MODE_TABLE` holds one :class:`Mode` per name of :data:`lncli.config.evaluate.MODES`;
:func:`make_runner` turns a model and a mode into a :class:`ModeRunner`, the callable
column of the sweep. A new mode is a new table row.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lncli.checkpoint import Checkpoint
from lncli.config.common import DEFAULT_GROUP_SIZE, DEFAULT_PRIOR_N, canonical_norm_or_none
from lncli.config.evaluate import (
    DEFAULT_BN_MODES,
    DEFAULT_GN_MODES,
    DEFAULT_LN_MODES,
    DEFAULT_TENT_LR,
    MODES,
)
from lncli.errors import LncliError
from lncli.nn import (
    PER_IMAGE_STATS,
    LocalNorm2d,
    Tent,
    convert_batchnorm_to_localnorm,
    majority_predict,
    set_test_mode,
    vote_predict,
)

__all__ = [
    "DEFAULT_STATS",
    "MODE_TABLE",
    "LocalNormCopies",
    "Mode",
    "ModeRunner",
    "default_modes",
    "has_localnorm",
    "is_groupnorm",
    "is_localnorm_checkpoint",
    "make_runner",
    "mode_spec",
    "modes_for",
    "predict",
    "resolve_heads",
    "resolve_mode",
    "scores",
]

Voter = Callable[[nn.Module, Tensor], Tensor]
"""Runs every LocalNorm head in turn on a batch and combines them into (N, K) class scores."""


DEFAULT_STATS = "default"
"""A :class:`Mode`'s ``stats`` when it takes the model's own test statistics: ``batch`` for a BN
model, ``local`` for a LocalNorm one (see :func:`resolve_mode`)."""


@dataclass(frozen=True)
class Mode:
    """How one test-time mode runs a model."""

    stats: str  # where LocalNorm's statistics come from (lncli.nn.TEST_STATS), DEFAULT_STATS, or "none" (GroupNorm as it is)
    voter: Voter | None = None  # run every head in turn and combine them (the recorded heads are then the mode's name)
    adapt: bool = False  # TENT: the affine parameters adapt online along the stream

    def shared(self, batch_size: int, group_size: int) -> int | None:
        """How many test images share statistics (what the records store as ``group_size``): the batch
        (``batch``, ``prior``), a group of G (``local``), one image (``single``), or none (running statistics,
        GroupNorm). Asked of a resolved mode (:func:`resolve_mode`)."""
        return {"batch": batch_size, "prior": batch_size, "local": group_size, "single": 1}.get(self.stats)


MODE_TABLE: dict[str, Mode] = {
    "running": Mode("running"),
    "batch": Mode("batch"),
    "local": Mode("local"),
    "single": Mode("single"),
    "vote": Mode("single", vote_predict),
    "majority": Mode("single", majority_predict),
    "prior": Mode("prior"),
    "tent": Mode(DEFAULT_STATS, adapt=True),
    "groupnorm": Mode("none"),
}
"""Every mode of :data:`lncli.config.evaluate.MODES`, by name, in the same order (a test holds them equal)."""


def mode_spec(mode: str) -> Mode:
    """The :class:`Mode` of a name.

    Raises:
        LncliError: an unknown mode (the valid ones are listed).
    """
    try:
        return MODE_TABLE[mode]
    except KeyError:
        raise LncliError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}") from None


def resolve_mode(mode: str, localnorm: bool) -> Mode:
    """A mode's :class:`Mode` for one kind of model: :data:`DEFAULT_STATS` made concrete.

    Args:
        mode: one of :data:`lncli.config.evaluate.MODES`.
        localnorm: whether the model (or checkpoint) is a LocalNorm one.

    Returns:
        The spec, its ``stats`` those of ``local`` (LocalNorm) or ``batch`` (BN) when the mode takes
        the model's own test statistics.

    Raises:
        LncliError: an unknown mode.
    """
    spec = mode_spec(mode)
    if spec.stats != DEFAULT_STATS:
        return spec
    return dataclasses.replace(spec, stats="local" if localnorm else "batch")


def resolve_heads(heads: str | None, stats: str) -> str:
    """The affine-head rule a column really uses: the mean under per-image statistics, else ``heads``.

    Args:
        heads: ``--heads`` (``position`` or ``mean``; None: ``position``, the paper's).
        stats: the column's resolved statistics (:attr:`Mode.stats`).

    Returns:
        ``mean`` for :data:`lncli.nn.PER_IMAGE_STATS` (no image belongs to a group), else ``heads``.
    """
    return "mean" if stats in PER_IMAGE_STATS else heads or "position"


def is_localnorm_checkpoint(ckpt: Checkpoint) -> bool:
    """Whether a checkpoint's norm kind is LocalNorm (in any accepted spelling)."""
    return canonical_norm_or_none(ckpt.norm.kind) == "localnorm"


def has_localnorm(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is a :class:`lncli.nn.LocalNorm2d`."""
    return any(isinstance(m, LocalNorm2d) for m in model.modules())


def is_groupnorm(ckpt: Checkpoint) -> bool:
    """Whether a checkpoint's model uses GroupNorm (which has no test-time statistics)."""
    return canonical_norm_or_none(ckpt.norm.kind) == "groupnorm"


def default_modes(ckpt: Checkpoint) -> tuple[str, ...]:
    """A checkpoint's modes when none are asked for: BN ``running`` + ``batch`` (the paper's two baselines);
    LocalNorm ``local``; GroupNorm ``groupnorm``."""
    if is_groupnorm(ckpt):
        return DEFAULT_GN_MODES
    return DEFAULT_LN_MODES if is_localnorm_checkpoint(ckpt) else DEFAULT_BN_MODES


def modes_for(ckpt: Checkpoint, asked: tuple[str, ...] | None, name: str = "the checkpoint") -> tuple[str, ...]:
    """The modes a checkpoint runs in: those asked for, else its defaults; GroupNorm always its only mode.

    Args:
        ckpt: the checkpoint.
        asked: ``--mode`` (None = not given).
        name: the checkpoint's name for messages.

    Returns:
        The modes, in order.

    Raises:
        LncliError: ``groupnorm`` asked for a checkpoint that has batch statistics.
    """
    if is_groupnorm(ckpt):
        return DEFAULT_GN_MODES  # whatever was asked: the caller notes the override once (grid.mode_notes)
    if asked and "groupnorm" in asked:
        raise LncliError(
            f"mode 'groupnorm' runs GroupNorm checkpoints, which always run in it; {name} uses "
            f"{ckpt.norm.kind}: leave groupnorm out of --mode"
        )
    return asked or default_modes(ckpt)


class LocalNormCopies:
    """One-head LocalNorm copies of BatchNorm models, made once per model and shared by its modes.

    A BN model in a test-statistics mode runs through a copy that shares nothing with the
    original, so that its ``running`` column keeps using the untouched BN model.
    """

    def __init__(self, device: torch.device | None = None):
        """Args: where the copies go (``None``: where the conversion leaves them)."""
        self.device = device
        # Keyed by id(model); the model is held too so that its id cannot be reused while the copy lives.
        self._copies: dict[tuple[int, int], tuple[nn.Module, nn.Module]] = {}

    def get(self, model: nn.Module, group_size: int) -> nn.Module:
        """The eval-mode one-head LocalNorm copy of ``model`` with group size ``group_size``."""
        key = (id(model), group_size)
        if key not in self._copies:
            ln = convert_batchnorm_to_localnorm(copy.deepcopy(model), group_size=group_size, num_heads=1).eval()
            self._copies[key] = (model, ln if self.device is None else ln.to(self.device))
        return self._copies[key][1]


@dataclass(frozen=True)
class ModeRunner:
    """One model in one mode: the module to call, how to set it up, and what the records say about it."""

    mode: str
    heads: str  # recorded: position/mean (mean in the per-image modes), the voting modes' name, "none" for groupnorm
    group_size: int | None  # recorded: how many images share statistics (None = running statistics)
    model: nn.Module
    # (stats, heads, G) set on the LocalNorm layers before each call: a module may serve several columns.
    # None: a plain BatchNorm model in running mode, called as it is.
    settings: tuple[str, str, int] | None
    prior_n: float | None = None  # prior mode's N (set with the settings; recorded), None in other modes
    adapter: Tent | None = None  # tent mode: adapts (a private copy of) the model along each stream

    def scores(self, x: Tensor, stream: int = 0) -> Tensor:
        """Class scores (N, K) for a normalised batch x (N, C, H, W): logits, vote probabilities or
        majority vote counts. ``stream`` names the sequence the batch belongs to (the sweep's cell):
        only ``tent`` keeps state along a stream, one per stream."""
        if self.settings is not None:
            stats, heads, group_size = self.settings
            set_test_mode(self.model, stats=stats, heads=heads, group_size=group_size, prior_n=self.prior_n)
        if self.adapter is not None:
            return self.adapter(x, stream)
        voter = MODE_TABLE[self.mode].voter
        return self.model(x) if voter is None else voter(self.model, x)

    def predict(self, x: Tensor, stream: int = 0) -> Tensor:
        """Class predictions (N,) for a normalised batch x (N, C, H, W) of ``stream`` (see :meth:`scores`)."""
        return self.scores(x, stream).argmax(dim=1)


def make_runner(
    model: nn.Module,
    mode: str,
    *,
    heads: str | None,
    group_size: int,
    batch_size: int,
    copies: LocalNormCopies | None = None,
    prior_n: float = DEFAULT_PRIOR_N,
    tent_lr: float = DEFAULT_TENT_LR,
    tent_steps: int = 1,
) -> ModeRunner:
    """Prepare ``model`` to run in ``mode`` (the model is put in eval mode; its weights are never
    changed: ``tent`` adapts a copy of its own).

    Args:
        model: a BN, LocalNorm or (mode ``groupnorm`` only) GroupNorm classifier.
        mode: one of :data:`lncli.config.evaluate.MODES`.
        heads: ``position`` or ``mean`` where images form groups (None: ``position``); the per-image
            modes take the mean whatever this says (:func:`resolve_heads`).
        group_size: G for ``local`` (and LocalNorm's head positions where images form groups).
        batch_size: the test batch size (recorded as the ``batch`` mode's group).
        copies: where BN models' LocalNorm copies are kept, so that a model's modes share one
            (``None``: a fresh copy for this runner).
        prior_n: N of ``prior`` mode (ignored by the others).
        tent_lr: Adam's learning rate in ``tent`` mode (ignored by the others).
        tent_steps: Adam steps per batch in ``tent`` mode (ignored by the others).

    Returns:
        The runner.

    Raises:
        LncliError: an unknown mode, ``groupnorm`` for a BN/LocalNorm model, another mode for a
            GroupNorm one, or a ``tent`` model without affine norm parameters.
    """
    localnorm = has_localnorm(model)
    spec = resolve_mode(mode, localnorm)
    model.eval()
    heads = resolve_heads(heads, spec.stats)
    recorded_heads = mode if spec.voter is not None else heads
    shared = spec.shared(batch_size, group_size)
    if spec.stats == "none" or _groupnorm_only(model):
        return _groupnorm_runner(model, mode, shared)
    settings = (spec.stats, heads, group_size)
    if spec.stats == "running" and not localnorm:
        return ModeRunner(mode, recorded_heads, shared, model, None)
    if spec.adapt:
        # A copy of its own: TENT changes the affine values, which the model's other columns must not see.
        net = copy.deepcopy(model) if localnorm else LocalNormCopies().get(model, group_size)
        set_test_mode(net, stats=spec.stats, heads=heads, group_size=group_size)
        try:
            tent = Tent(net, tent_lr, tent_steps)
        except ValueError as exc:
            raise LncliError(f"mode tent: {exc}") from None
        return ModeRunner(mode, recorded_heads, shared, net, settings, adapter=tent)
    net = model if localnorm else (copies or LocalNormCopies()).get(model, group_size)
    return ModeRunner(mode, recorded_heads, shared, net, settings, prior_n=prior_n if spec.stats == "prior" else None)


def _groupnorm_only(model: nn.Module) -> bool:
    """GroupNorm layers and no batch-statistics (BatchNorm/LocalNorm) layer: nothing a test-time mode can set."""
    modules = list(model.modules())
    return any(isinstance(m, nn.GroupNorm) for m in modules) and not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules
    )


def _groupnorm_runner(model: nn.Module, mode: str, shared: int | None) -> ModeRunner:
    """The ``groupnorm`` mode's runner: the model called as it is, recorded with heads ``none``.

    Raises:
        LncliError: ``groupnorm`` for a model with batch statistics, or another mode for a GroupNorm model.
    """
    if mode != "groupnorm":
        raise LncliError(f"mode {mode!r} sets test-time statistics; a GroupNorm model has none (its mode: groupnorm)")
    if not _groupnorm_only(model):
        raise LncliError("mode 'groupnorm' runs GroupNorm models; this model has BatchNorm/LocalNorm layers")
    return ModeRunner(mode, "none", shared, model, None)


def scores(
    model: nn.Module,
    x: Tensor,
    mode: str,
    *,
    heads: str | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    prior_n: float = DEFAULT_PRIOR_N,
) -> Tensor:
    """Class scores of one normalised batch under a test-time mode (no grad, eval mode).

    A BatchNorm model asked for anything but ``running`` is run through a
    one-head LocalNorm copy; the model passed in is not changed.

    Args:
        model: a BN or LocalNorm classifier.
        x: (N, C, H, W) float batch, already normalised.
        mode: one of :data:`lncli.config.evaluate.MODES`.
        heads: ``position`` or ``mean`` where images form groups (None: ``position``; see :func:`make_runner`).
        group_size: G for ``local`` (and the head positions).
        prior_n: N of ``prior`` mode.

    Returns:
        (N, K) logits (``vote``: softmax probabilities averaged over heads; ``majority``: the
        number of heads voting for each class, whose argmax breaks ties towards the lowest class;
        ``tent``: the logits of its first batch, before any adaptation).
    """
    runner = make_runner(model, mode, heads=heads, group_size=group_size, batch_size=x.shape[0], prior_n=prior_n)
    with torch.inference_mode():
        return runner.scores(x)


def predict(
    model: nn.Module,
    x: Tensor,
    mode: str,
    *,
    heads: str | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    prior_n: float = DEFAULT_PRIOR_N,
) -> Tensor:
    """(N,) int64 predictions of :func:`scores` (same arguments)."""
    return scores(model, x, mode, heads=heads, group_size=group_size, prior_n=prior_n).argmax(dim=1)
