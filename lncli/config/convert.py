"""Typed, frozen configuration for ``lncli convert IN OUT`` (BatchNorm <-> LocalNorm).

:class:`ConvertConfig` holds what :func:`lncli.jobs.convert.run_convert` needs. The
values are checked by the job (:func:`lncli.nn.convert.check_conversion`) before IN is
read, so the config itself stays a plain record. Every default carries a *why* comment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lncli.config.common import DEFAULT_GROUP_SIZE

__all__ = ["ConvertConfig"]


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of ``lncli convert IN OUT``.

    Attributes:
        src: the checkpoint to read (an lncli checkpoint, or a foreign one with ``arch`` and ``data``).
        dst: where to write the converted checkpoint; must not be ``src``.
        to: ``"localnorm"`` or ``"batchnorm"`` (aliases such as ``"ln"`` accepted).
        group_size: G for LocalNorm.
        num_heads: affine heads per LocalNorm layer.
        grouping: ``"consecutive"`` or ``"strided"`` for LocalNorm.
        arch: the architecture of a foreign ``src`` (any form of :func:`lncli.config.train.parse_arch`;
            given by the user, so a ``package.module:function`` builder may run).
        data: the dataset a foreign ``src`` belongs to (its classes and channels), e.g. ``"cifar10"``.
        strict: refuse weights with missing or unexpected keys (else record them in the provenance).
    """

    src: Path
    dst: Path
    # No default: a conversion always names its direction.
    to: str
    # The authors' CIFAR setting (batch 128 / G 16 = 8 groups).
    group_size: int = DEFAULT_GROUP_SIZE
    # One head (Ghost-BN-like, order-independent) is the safe default for a converted
    # model, whose heads would all start from the same BN affine anyway; the paper
    # trains with batch / G heads.
    num_heads: int = 1
    # The authors' grouping; "strided" is a zero-copy view (faster) and, on shuffled
    # batches, equally faithful.
    grouping: str = "consecutive"
    # None: src must record its own arch (lncli checkpoints do).
    arch: str | None = None
    # None: src must record its data (lncli checkpoints do).
    data: str | None = None
    # A wrong --arch must fail, not write a half-random model.
    strict: bool = True
