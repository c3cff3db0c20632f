"""A Python caller's models and data, as the sweep takes them (:func:`lncli.evaluate`).

* Models: a checkpoint path, an ``nn.Module``, a list of them, or a ``{name: path_or_module}`` dict.
  A module becomes a :class:`~lncli.jobs.evaluate.checkpoints.LoadedCheckpoint` that holds it
  (:func:`module_checkpoint`): its norm kind, G and heads read from its layers, its hash from its
  weights; the sweep runs a deep copy, so the caller's module is never changed (weights, train/eval
  state, device). Its preprocessing is the options' or the data's, as for a foreign checkpoint.
* Data: a spec string as on the command line, a ``torch.utils.data.Dataset`` of ``(image, label)``
  (images as PIL images, uint8 HWC arrays or CHW tensors in [0, 1]: read exactly as image files are,
  :func:`lncli.images.image_to_input`), or an ``(images, labels)`` pair held in memory (uint8 or
  float in [0, 1], NCHW or NHWC). Noise is made on the pixels before normalisation, as for lncli's
  own data, so the same images give the same records whatever form they come in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lncli.checkpoint import Checkpoint, NormSpec
from lncli.data import DataMeta, ImageSet
from lncli.data.imagefolder import stratified_subset
from lncli.data.preprocess import IMAGENET, PreprocessLayer, as_channels
from lncli.errors import DataError, LncliError
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.testset import DatasetItems, EvalData, model_metas
from lncli.nn import LocalNorm2d

__all__ = ["DataArg", "ModelsArg", "arrays_data", "data_meta", "dataset_data", "module_checkpoint", "split_models"]

ModelsArg = str | Path | nn.Module | Sequence[str | Path | nn.Module] | Mapping[str, str | Path | nn.Module]
"""What :func:`lncli.evaluate` takes as models."""

DataArg = str | Any | tuple[Any, Any] | None
"""What :func:`lncli.evaluate` takes as data: a spec, a Dataset, an ``(images, labels)`` pair, or None."""


def split_models(models: ModelsArg) -> list[tuple[str | None, str | Path | nn.Module]]:
    """The models in order, each with the name the records give it (None: a path names itself).

    Raises:
        LncliError: no model, or something that is neither a path nor a module.
    """
    if isinstance(models, Mapping):
        entries: list[tuple[str | None, Any]] = [(str(k), v) for k, v in models.items()]
    elif isinstance(models, (str, Path, nn.Module)):
        entries = [(None, models)]
    else:
        entries = [(None, m) for m in models]
    if not entries:
        raise LncliError("no model to evaluate")
    out: list[tuple[str | None, str | Path | nn.Module]] = []
    for i, (name, model) in enumerate(entries):
        if isinstance(model, nn.Module):
            default = type(model).__name__ if len(entries) == 1 else f"{type(model).__name__}-{i + 1}"
            out.append((name or default, model))
        elif isinstance(model, (str, Path)):
            out.append((name, model))
        else:
            raise LncliError(f"a model must be a checkpoint path or an nn.Module, not {type(model).__name__}")
    return out


def _norm(module: nn.Module) -> NormSpec:
    """The norm a module's layers are: LocalNorm (its G, heads and grouping), GroupNorm alone, else BatchNorm."""
    layers = list(module.modules())
    ln = next((m for m in layers if isinstance(m, LocalNorm2d)), None)
    if ln is not None:
        return NormSpec("localnorm", group_size=ln.group_size, num_heads=ln.num_heads, grouping=ln.grouping)  # type: ignore[arg-type]
    batch_stats = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in layers)
    if not batch_stats and any(isinstance(m, nn.GroupNorm) for m in layers):
        return NormSpec("groupnorm")
    return NormSpec("batchnorm")  # BatchNorm, or no norm layer at all (its running mode is the model as it is)


def _weights_sha256(state: Mapping[str, Tensor]) -> str:
    """A module's identity for the records and ``--compare``: the SHA-256 of its names and weights."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def module_checkpoint(name: str, module: nn.Module, meta: DataMeta) -> LoadedCheckpoint:
    """A module as the sweep takes a checkpoint: it holds the module, which the sweep deep-copies.

    Args:
        name: what the records call it (their ``checkpoint`` field and the table's column).
        module: the model (not changed).
        meta: its data's classes and channels (:func:`data_meta`); its preprocessing is resolved as a
            foreign checkpoint's (the options, the data's, timm's, ImageNet's).

    Returns:
        The loaded checkpoint.
    """
    state = module.state_dict()
    ckpt = Checkpoint(
        arch=f"module:{type(module).__module__}.{type(module).__qualname__}",
        arch_kwargs={},
        norm=_norm(module),
        data=meta,
        state_dict=state,
        provenance={"foreign": "an nn.Module passed to lncli.evaluate"},  # no recorded preprocessing
    )
    return LoadedCheckpoint(path=name, sha256=_weights_sha256(state), checkpoint=ckpt, module=module)


def _first_conv_channels(modules: Sequence[nn.Module]) -> int | None:
    """The input channels of the first model's first convolution, if any (what the model reads)."""
    for module in modules:
        conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None:
            return int(conv.in_channels)
    return None


def _targets(dataset: Any) -> list[int]:
    """Every item's label: the dataset's ``targets`` when it has them (torchvision's do), else each item's."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = [dataset[i][1] for i in range(len(dataset))]
    return [int(t) for t in targets]


def data_meta(data: Any, channels: int | None, modules: Sequence[nn.Module]) -> DataMeta:
    """What a Dataset or an ``(images, labels)`` pair tells a module: classes and channels, ImageNet's
    preprocessing (the layers above it, the options, say otherwise).

    Args:
        data: a Dataset or a pair.
        channels: ``channels`` (None: the modules' first convolution's, else 3).
        modules: the caller's modules.
    """
    if isinstance(data, tuple):
        images, labels = _arrays(*data)
        c = int(images.shape[1])
        classes: tuple[str, ...] = ()
        n_classes = int(labels.max()) + 1 if len(labels) else 0
    else:
        c = channels or _first_conv_channels(modules) or 3
        classes = tuple(str(k) for k in getattr(data, "classes", ()) or ())
        n_classes = len(classes) or max(_targets(data), default=-1) + 1
    assert IMAGENET.image_size is not None and IMAGENET.mean is not None and IMAGENET.std is not None
    return DataMeta(
        name="arrays" if isinstance(data, tuple) else type(data).__name__,
        num_classes=n_classes,
        in_channels=c,
        image_size=IMAGENET.image_size,
        mean=as_channels(IMAGENET.mean, c, "the mean"),
        std=as_channels(IMAGENET.std, c, "the std"),
        classes=classes,
        resize=IMAGENET.resize,
    )


def _arrays(images: Any, labels: Any) -> tuple[Tensor, Tensor]:
    """An ``(images, labels)`` pair as uint8 (N, C, H, W) and int64 (N,) tensors.

    Images: uint8 or float in [0, 1] (scaled by 255 and rounded), (N, C, H, W) or (N, H, W, C) with C
    in {1, 3}, or (N, H, W) grayscale; tensors or arrays.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images).detach().cpu()
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels).detach().cpu().long()
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (N, H, W) grayscale -> (N, 1, H, W)
    if x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"images must be (N, C, H, W) or (N, H, W, C) with C 1 or 3, got shape {tuple(x.shape)}")
    if x.is_floating_point():
        x = x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise DataError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
    if y.dim() != 1 or len(y) != len(x):
        raise DataError(f"labels must be (N,) for {len(x)} images, got shape {tuple(y.shape)}")
    return x.contiguous(), y


def arrays_data(
    images: Any, labels: Any, models: Sequence[LoadedCheckpoint], flags: PreprocessLayer, limit: int | None
) -> EvalData:
    """An ``(images, labels)`` pair as the sweep's data, read as stored unless a layer says otherwise.

    Raises:
        DataError: images or labels of the wrong shape or type.
    """
    x, y = _arrays(images, labels)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    c, h, w = (int(v) for v in x.shape[1:])
    meta = DataMeta("arrays", int(y.max()) + 1 if len(y) else 0, c, (h, w), (0.0,) * c, (1.0,) * c)
    own = PreprocessLayer((h, w), None, None, None, None, None, "dataset", "the arrays")  # their size as stored
    metas, notes = model_metas(models, flags, own)
    return EvalData(name="arrays", synthetic=False, clean=ImageSet(x, y, meta), model_metas=metas, notes=notes)


def dataset_data(
    dataset: Any, models: Sequence[LoadedCheckpoint], flags: PreprocessLayer, limit: int | None
) -> EvalData:
    """A Dataset of ``(image, label)`` as the sweep's data, streamed like an image folder (``limit``: every
    class kept, :func:`~lncli.data.imagefolder.stratified_subset`)."""
    targets = _targets(dataset)
    keep = stratified_subset(targets, limit)
    classes = tuple(str(k) for k in getattr(dataset, "classes", ()) or ())
    items = DatasetItems(dataset, tuple(keep), tuple(targets[i] for i in keep), classes)
    metas, notes = model_metas(models, flags)
    name = type(dataset).__name__
    return EvalData(name=name, synthetic=False, clean=None, limit=limit, items=items, model_metas=metas, notes=notes)
