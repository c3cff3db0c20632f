"""Seedable, vectorised image noise that matches imagecorruptions in distribution.

The robustness numbers in lncli (and in LocalNorm, arXiv 1902.06550) are only as
good as the noise. This package is the noise engine behind ``lncli corrupt`` and
``lncli evaluate``:

* :func:`corrupt` takes a batch ``(N, C, H, W)`` of uint8 or float-in-[0, 1]
  images on any device and returns the same dtype, shape and device. Grayscale
  stays one channel, any H and W works (28x28 included), severity 0 is clean.
* Profiles (:data:`PROFILES`) map a noise name and a severity 1..5 to a law and
  a constant: ``imagenet-c``, ``cifar-10-c`` and the LocalNorm authors' ``paper``
  protocol, whose dataset-level min-max rescale is :func:`rescale_minmax`.
* The noise of image ``i`` depends only on ``(seed, noise, severity, i, C, H, W)``:
  any batch size, chunking, order or thread count gives the same bits. :func:`image_seeds`
  offers the same per-image hashing to callers with randomness of their own.

Where things live:

* :mod:`~lncli.noise.api`: :func:`corrupt`, its input checks and the batch loop;
* :mod:`~lncli.noise.profiles`: the profile registry and name resolution;
* :mod:`~lncli.noise.laws`: the noise laws and the :data:`NOISES` registry;
* :mod:`~lncli.noise.backend`: the other imagecorruptions corruptions (blurs, weather, digital);
* :mod:`~lncli.noise.rescale`: the min-max rescale;
* private: ``_seeding`` (which random numbers each image gets), ``_tables`` (the
  exact integer laws of the uint8 noises), ``_sampling`` (their samplers) and
  ``_kernels`` (the samplers' fused numba form, bit-identical to the numpy path,
  which is the fallback when numba cannot load or ``LNCLI_NUMBA=0``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lncli.lazy import attach

# Each public name and its module, imported on first use (PEP 562): the profile table
# (:mod:`~lncli.noise.profiles`) needs no torch, so a command line's noise names can be
# checked through ``lncli.noise.profiles`` before torch is loaded.
_PUBLIC: dict[str, str] = {
    "image_seeds": "lncli.noise._seeding",
    "corrupt": "lncli.noise.api",
    "BACKEND_CORRUPTIONS": "lncli.noise.profiles",
    "NOISES": "lncli.noise.laws",
    "NoiseFn": "lncli.noise.laws",
    "PAPER_LEVELS": "lncli.noise.profiles",
    "PROFILES": "lncli.noise.profiles",
    "Profile": "lncli.noise.profiles",
    "canonical_noise": "lncli.noise.profiles",
    "list_noises": "lncli.noise.profiles",
    "list_profiles": "lncli.noise.profiles",
    "noise_param": "lncli.noise.profiles",
    "apply_minmax": "lncli.noise.rescale",
    "channel_range": "lncli.noise.rescale",
    "rescale_minmax": "lncli.noise.rescale",
}

if TYPE_CHECKING:  # the same names, for type checkers (``X as X``: a re-export)
    from lncli.noise._seeding import image_seeds as image_seeds
    from lncli.noise.api import corrupt as corrupt
    from lncli.noise.laws import NOISES as NOISES
    from lncli.noise.laws import NoiseFn as NoiseFn
    from lncli.noise.profiles import BACKEND_CORRUPTIONS as BACKEND_CORRUPTIONS
    from lncli.noise.profiles import PAPER_LEVELS as PAPER_LEVELS
    from lncli.noise.profiles import PROFILES as PROFILES
    from lncli.noise.profiles import Profile as Profile
    from lncli.noise.profiles import canonical_noise as canonical_noise
    from lncli.noise.profiles import list_noises as list_noises
    from lncli.noise.profiles import list_profiles as list_profiles
    from lncli.noise.profiles import noise_param as noise_param
    from lncli.noise.rescale import apply_minmax as apply_minmax
    from lncli.noise.rescale import channel_range as channel_range
    from lncli.noise.rescale import rescale_minmax as rescale_minmax

__all__ = [  # a test holds this list, _PUBLIC and the TYPE_CHECKING imports equal
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
    "image_seeds",
    "list_noises",
    "list_profiles",
    "noise_param",
    "rescale_minmax",
]

__getattr__, __dir__ = attach(__name__, _PUBLIC)
