"""Names, defaults and grammars that every command shares, each written once.

The default LocalNorm group size and ``prior`` weight, the norm kinds with their accepted
spellings (and which of them ``convert`` swaps between), the preprocessing vocabulary
(interpolations, timm's crop modes, normalisation preset names), and the two list grammars of the
command line (severities such as ``0-2,5`` and comma lists of names such as modes, with the
close-name hint of every unknown name) live here, so that the layers (:mod:`lncli.nn`,
:mod:`lncli.data`), the configs, the conversion and the CLI cannot drift apart. Nothing here
belongs to one command.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Literal, get_args

from lncli.errors import LncliError

__all__ = [
    "CONVERT_TARGETS",
    "CROP_MODES",
    "DATA_DIR_HELP",
    "DEFAULT_CROP_MODE",
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_PRIOR_N",
    "DEVICES",
    "DOWNLOAD_HELP",
    "GROUPINGS",
    "INTERPOLATIONS",
    "MAX_GN_GROUPS",
    "MAX_SEVERITY",
    "NORMALIZATION_PRESETS",
    "NORM_ALIASES",
    "NORM_KINDS",
    "PROFILE_NAMES",
    "DeviceName",
    "Grouping",
    "NormKind",
    "ProfileName",
    "canonical_norm",
    "canonical_norm_or_none",
    "close_names",
    "parse_list",
    "parse_severities",
    "parse_stats",
]

DEFAULT_GROUP_SIZE = 16
"""LocalNorm's samples per group G: the authors' CIFAR setting (batch 128 / G 16 = 8 groups)."""

DEFAULT_PRIOR_N = 16.0
"""``prior`` mode's N, the weight of the training statistics in images: lncli's default. Schneider et al.
2020 ("Improving robustness against common corruptions by covariate shift adaptation", NeurIPS) mix the
running and the test batch's statistics with a prior weight; their code takes it as a number in [0, 1],
or as N / (N + n) with n the nominal batch size, and sets no default N. 16 here is lncli's choice: the
running statistics weigh as much as a batch of 16 test images (:data:`DEFAULT_GROUP_SIZE`, LocalNorm's G)."""

MAX_SEVERITY = 5
"""Severities run 0 (clean) to 5, as in ImageNet-C and CIFAR-10-C."""

MAX_GN_GROUPS = 32
"""GroupNorm's default number of groups, at most: Wu & He's (ECCV 2018) G = 32 (see :func:`lncli.nn.default_groups`)."""

NormKind = Literal["batchnorm", "localnorm", "groupnorm"]
Grouping = Literal["consecutive", "strided"]
DeviceName = Literal["auto", "cpu", "cuda"]
ProfileName = Literal["imagenet-c", "cifar-10-c", "paper"]
NORM_KINDS: tuple[str, ...] = get_args(NormKind)
"""The norm layers lncli builds (the typed configs use :data:`NormKind`).

``groupnorm`` (``torch.nn.GroupNorm``) is the batch-independent control: it has no batch
statistics, so it has no test-time modes and nothing to convert.
"""

CONVERT_TARGETS: tuple[str, ...] = ("localnorm", "batchnorm")
"""The norm kinds ``lncli convert`` swaps between, LocalNorm (the usual direction) first: the kinds with
batch statistics. Not every norm kind: GroupNorm has no batch statistics to swap."""

GROUPINGS: tuple[str, ...] = get_args(Grouping)
"""How LocalNorm cuts a batch into groups.

``consecutive``: group k = samples kG ... kG+G-1 (the authors' choice). ``strided``: with
M = N // G groups, group m = samples m, m+M, m+2M, ...; this makes the grouping a zero-copy
view and is faster. Training batches are shuffled, so both partitions are equally faithful;
the same rule is used at train and test time.
"""

PROFILE_NAMES: tuple[str, ...] = get_args(ProfileName)
"""The noise profiles of :data:`lncli.noise.PROFILES`, by name: light enough for the CLI to build its
choices from without importing torch (a test holds the two equal)."""

DEVICES: tuple[str, ...] = get_args(DeviceName)
"""Where models run: ``auto`` is CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else the CPU."""

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest")
"""How images are resized (``--interpolation``): torchvision's and timm's eval resizes use the first two."""

NORMALIZATION_PRESETS: tuple[str, ...] = ("imagenet", "cifar10", "none")
"""Names ``--mean``/``--std`` accept besides numbers (their values: :data:`lncli.data.preprocess.PRESETS`,
which a test holds to these names); ``none`` feeds [0, 1] pixels, for models that normalise inside
(as RobustBench's do). The names live here, apart from the values, so that the CLI can offer them
without importing torch."""
CROP_MODES: tuple[str, ...] = ("center", "squash", "border")
"""How the resized image becomes the crop (``--crop-mode``), timm's ``crop_mode`` names and rules:
``center`` resizes the short side (aspect kept) and cuts the centre, ``squash`` resizes both sides
(aspect not kept), ``border`` resizes the long side (aspect kept) and pads with the mean colour."""

DEFAULT_CROP_MODE = "center"
"""torchvision's ``Resize`` + ``CenterCrop``, and timm's default: what lncli did before crop modes existed."""

DATA_DIR_HELP = "Folder searched first for the dataset's files (then $LNCLI_DATA, ~/.cache/lncli, /usr/share/datasets)."
"""``--data-dir``'s help, the same for every command that reads a dataset."""

DOWNLOAD_HELP = "Let torchvision download a missing dataset (needs the network)."
"""``--download``'s help, the same for every command that reads a dataset."""

NORM_ALIASES: dict[str, str] = {
    "batchnorm": "batchnorm",
    "bn": "batchnorm",
    "batch_norm": "batchnorm",
    "localnorm": "localnorm",
    "ln": "localnorm",
    "local_norm": "localnorm",
    "groupnorm": "groupnorm",
    "gn": "groupnorm",
    "group_norm": "groupnorm",
}
"""Accepted spellings of :data:`NORM_KINDS` (lower case)."""


def canonical_norm_or_none(kind: str) -> str | None:
    """The canonical norm kind for an accepted spelling (``" BN"`` -> ``"batchnorm"``), or None for any other.

    For callers that word their own refusal (``convert``'s targets) or that must keep a file's
    unknown kind (a checkpoint record, refused later when its model is built).

    Args:
        kind: a spelling; case and surrounding spaces are ignored.

    Returns:
        One of :data:`NORM_KINDS`, or None.
    """
    return NORM_ALIASES.get(str(kind).strip().lower())


def canonical_norm(kind: str) -> str:
    """The canonical norm kind for an accepted spelling (``"BN"`` -> ``"batchnorm"``).

    Args:
        kind: any spelling in :data:`NORM_ALIASES`, in any case.

    Returns:
        One of :data:`NORM_KINDS`.

    Raises:
        LncliError: an unknown kind, listing the valid ones.
    """
    canonical = canonical_norm_or_none(kind)
    if canonical is None:
        hint = close_names(str(kind).strip().lower(), list(NORM_ALIASES))
        raise LncliError(f"unknown norm kind {kind!r}{hint}; valid: {', '.join(NORM_KINDS)} (or bn, ln, gn)")
    return canonical


def close_names(name: str, valid: Sequence[str]) -> str:
    """The hint an unknown name gets: ``" (did you mean 'gaussian'?)"``, or ``""`` when nothing is close.

    Args:
        name: the unknown name, as the user typed it (lower case).
        valid: the accepted names.

    Returns:
        The text to put after the name in the error line (difflib's closest matches, up to 2).
    """
    close = difflib.get_close_matches(name, list(valid), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def parse_severities(spec: str) -> tuple[int, ...]:
    """Parse a severity list such as ``"0-5"``, ``"1,3,5"`` or ``"0-2,5"`` (empty items are ignored).

    Args:
        spec: comma-separated integers and inclusive ranges ``a-b``, each in 0..5 (0 = clean).

    Returns:
        The sorted, de-duplicated severities.

    Raises:
        LncliError: a malformed item, a reversed range, a value outside 0..5, or no severity at all.
    """
    out: set[int] = set()
    for item in str(spec).replace(" ", "").split(","):
        if not item:
            continue
        lo_s, sep, hi_s = item.partition("-")
        if not lo_s.isdigit() or (sep and not hi_s.isdigit()):
            raise LncliError(f"--severity {spec!r}: bad item {item!r}; use e.g. 0-5, 3 or 1,3,5")
        lo, hi = int(lo_s), int(hi_s) if sep else int(lo_s)
        if lo > hi:
            raise LncliError(f"--severity {spec!r}: range {item!r} runs backwards")
        if hi > MAX_SEVERITY:
            raise LncliError(f"--severity {spec!r}: {hi} is out of range; severities are 0..{MAX_SEVERITY} (0 = clean)")
        out.update(range(lo, hi + 1))
    if not out:
        raise LncliError(f"--severity {spec!r}: no severity given; use e.g. 0-5")
    return tuple(sorted(out))


def parse_list(text: str, valid: Sequence[str], what: str) -> tuple[str, ...]:
    """Parse a comma list of names (``all`` = every valid one), rejecting unknown names.

    Args:
        text: e.g. ``"running,batch"``; case and spaces are ignored, duplicates dropped.
        valid: the accepted names, in their canonical order.
        what: the option's name for messages (``mode``, ``noise``...).

    Returns:
        The names in the order given.

    Raises:
        LncliError: an empty list, or an unknown name (the valid ones are listed).
    """
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise LncliError(f"--{what} is empty; valid: {', '.join(valid)}")
    if items == ["all"]:
        return tuple(valid)
    for item in items:
        if item not in valid:
            raise LncliError(f"unknown {what} {item!r}{close_names(item, valid)}; valid: {', '.join(valid)} (or 'all')")
    return tuple(dict.fromkeys(items))


def parse_stats(text: str | None, flag: str) -> tuple[float, ...] | str | None:
    """Parse ``--mean``/``--std``: a :data:`NORMALIZATION_PRESETS` name, or 1 or 3 comma-separated numbers.

    Args:
        text: the option's text; None when not given.
        flag: the option's name, for messages.

    Returns:
        The preset's name (lower case), the numbers, or None.

    Raises:
        LncliError: anything else.
    """
    if text is None:
        return None
    name = text.strip().lower()
    if name in NORMALIZATION_PRESETS:
        return name
    try:
        values = tuple(float(v) for v in name.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
        raise LncliError(
            f"{flag} {text!r} is not 1 or 3 comma-separated numbers nor one of {', '.join(NORMALIZATION_PRESETS)}"
        )
    return values
