"""Compatibility shim: the code lives in :mod:`lncli.noise` (``parse_severities`` in :mod:`lncli.config`)."""

from lncli.config.common import parse_severities
from lncli.noise import (
    BACKEND_CORRUPTIONS,
    NOISES,
    PAPER_LEVELS,
    PROFILES,
    NoiseFn,
    Profile,
    apply_minmax,
    canonical_noise,
    channel_range,
    corrupt,
    list_noises,
    list_profiles,
    noise_param,
    rescale_minmax,
)

__all__ = [
    "BACKEND_CORRUPTIONS",
    "NOISES",
    "PAPER_LEVELS",
    "PROFILES",
    "NoiseFn",
    "Profile",
    "apply_minmax",
    "canonical_noise",
    "channel_range",
    "corrupt",
    "list_noises",
    "list_profiles",
    "noise_param",
    "parse_severities",
    "rescale_minmax",
]
