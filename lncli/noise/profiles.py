"""The profile registry: which noise law and which constant a (noise name, severity 1..5) means.

* ``imagenet-c``: imagecorruptions' (Hendrycks & Dietterich) constants;
* ``cifar-10-c``: the milder constants of Hendrycks' CIFAR-10-C release;
* ``paper``: the LocalNorm authors' own protocol (arXiv 1902.06550; their code, github.com/byin-cwi/LocalNorm1):
  multiplicative uniform "gaussian", multiplicative Poisson and pixel dropout,
  float results unclipped for their dataset-level min-max rescale
  (:func:`lncli.noise.rescale_minmax`, an explicit separate step);
* custom: :func:`lncli.noise.corrupt` takes ``param=`` for an explicit constant instead.

User spellings (``gaussian_noise``, case, the paper profile's ``shot``/``impulse``)
resolve here, in :func:`canonical_noise`, and nowhere else. This module imports no torch, so that
a command line's noise names are checked before torch is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lncli.config.common import close_names
from lncli.errors import LncliError

__all__ = [
    "BACKEND_CORRUPTIONS",
    "PAPER_LEVELS",
    "PROFILES",
    "Profile",
    "canonical_noise",
    "list_noises",
    "list_profiles",
    "noise_param",
]


@dataclass(frozen=True)
class Profile:
    """A named set of (noise name -> registry function, constants for severities 1..5)."""

    name: str
    description: str
    noises: dict[str, tuple[str, tuple[float, ...]]] = field(default_factory=dict)
    clip_float: bool = True  # clip float outputs to [0, 1]


_BLURS = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur")
_WEATHER = ("snow", "frost", "fog", "spatter")
_DIGITAL = ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate")
#: The imagecorruptions corruptions lncli serves through the backend (:mod:`lncli.noise.backend`; its
#: noises are lncli's own laws). Named here, beside the other names, so that the table imports no torch.
BACKEND_CORRUPTIONS = _BLURS + _WEATHER + _DIGITAL

_IC_BACKEND = {name: (name, (1.0, 2.0, 3.0, 4.0, 5.0)) for name in BACKEND_CORRUPTIONS}

#: The LocalNorm authors' full level lists (their code, github.com/byin-cwi/LocalNorm1); ``param=`` reaches any.
PAPER_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.0, 0.1, 0.2, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0),  # CIFAR sigma levels
    "poisson": (0.0, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0),  # lambda
    "dropout": tuple(round(0.05 * i, 2) for i in range(20)),  # p = 0, .05, ..., .95
}

PROFILES: dict[str, Profile] = {  # keys in the order of lncli.config.common.PROFILE_NAMES
    "imagenet-c": Profile(
        "imagenet-c",
        "imagecorruptions 1.1.2 / ImageNet-C constants (Hendrycks & Dietterich 2019)",
        {
            "gaussian": ("gaussian", (0.08, 0.12, 0.18, 0.26, 0.38)),
            "shot": ("shot", (60.0, 25.0, 12.0, 5.0, 3.0)),
            "impulse": ("impulse", (0.03, 0.06, 0.09, 0.17, 0.27)),
            "speckle": ("speckle", (0.15, 0.2, 0.35, 0.45, 0.6)),
            **_IC_BACKEND,
        },
    ),
    "cifar-10-c": Profile(
        "cifar-10-c",
        "Hendrycks' CIFAR-10-C constants (milder than ImageNet-C)",
        {
            "gaussian": ("gaussian", (0.04, 0.06, 0.08, 0.09, 0.10)),
            "shot": ("shot", (500.0, 250.0, 100.0, 75.0, 50.0)),
            "impulse": ("impulse", (0.01, 0.02, 0.03, 0.05, 0.07)),
        },
    ),
    "paper": Profile(
        "paper",
        "LocalNorm authors' protocol (arXiv 1902.06550): multiplicative uniform, multiplicative Poisson, "
        "pixel dropout; five of their levels as severities 1..5, float results unclipped",
        {
            "gaussian": ("paper_uniform", (0.2, 0.5, 1.0, 2.0, 5.0)),
            "poisson": ("paper_poisson", (0.05, 0.1, 0.25, 0.5, 1.0)),
            "dropout": ("paper_dropout", (0.1, 0.2, 0.3, 0.5, 0.7)),
        },
        clip_float=False,
    ),
}

# Paper aliases so that one sweep (--noise gaussian,shot,impulse) runs under every profile.
_PAPER_ALIASES = {"shot": "poisson", "impulse": "dropout", "mbn": "dropout"}


def list_profiles() -> list[str]:
    """Names of the built-in profiles."""
    return list(PROFILES)


def list_noises(profile: str = "imagenet-c") -> list[str]:
    """Noise names a profile knows (``_noise`` suffixes, e.g. ``gaussian_noise``, are also accepted).

    Args:
        profile: a name from :data:`PROFILES`.

    Returns:
        The noise names, the torch-native ones first.
    """
    return list(_profile(profile).noises)


def _profile(profile: str) -> Profile:
    """The profile named ``profile``; an unknown name raises LncliError listing the valid ones."""
    try:
        return PROFILES[profile]
    except KeyError:
        raise LncliError(f"unknown noise profile {profile!r}; valid: {', '.join(PROFILES)}") from None


def canonical_noise(noise: str, profile: str = "imagenet-c") -> str:
    """Resolve a user noise name (``gaussian_noise``, case, paper aliases) to the profile's name.

    Raises:
        LncliError: unknown name; the message lists the valid ones.
    """
    prof = _profile(profile)
    name = noise.strip().lower().replace("-", "_")
    if name not in prof.noises and name.endswith("_noise"):
        name = name[: -len("_noise")]
    if profile == "paper":
        name = _PAPER_ALIASES.get(name, name)
    if name not in prof.noises:
        hint = close_names(name, [*prof.noises, *(_PAPER_ALIASES if profile == "paper" else ())])
        raise LncliError(f"unknown noise {noise!r} for profile {profile!r}{hint}; valid: {', '.join(prof.noises)}")
    return name


def _check_severity(severity: int) -> int:
    """``severity`` as an int in 0..5, or LncliError (bools and floats are refused)."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise LncliError(f"severity must be an integer 0..5 (0 = clean), got {severity!r}")
    return int(severity)


def noise_param(noise: str, severity: int, profile: str = "imagenet-c") -> float:
    """The constant a profile uses for a noise at a severity.

    Args:
        noise: noise name (see :func:`list_noises`).
        severity: 1..5 (0 = clean, returns 0.0).
        profile: profile name.

    Returns:
        sigma for gaussian/speckle, the rate lambda for shot, the amount for
        impulse; paper: sigma, lambda, p; backend corruptions: the severity itself.
    """
    sev = _check_severity(severity)
    name = canonical_noise(noise, profile)
    if sev == 0:
        return 0.0
    return float(_profile(profile).noises[name][1][sev - 1])
