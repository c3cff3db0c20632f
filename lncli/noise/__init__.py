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

from lncli.noise._seeding import image_seeds
from lncli.noise.api import corrupt
from lncli.noise.backend import BACKEND_CORRUPTIONS
from lncli.noise.laws import NOISES, NoiseFn
from lncli.noise.profiles import (
    PAPER_LEVELS,
    PROFILES,
    Profile,
    canonical_noise,
    list_noises,
    list_profiles,
    noise_param,
)
from lncli.noise.rescale import apply_minmax, channel_range, rescale_minmax

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
    "image_seeds",
    "list_noises",
    "list_profiles",
    "noise_param",
    "rescale_minmax",
]
