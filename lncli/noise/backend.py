"""The imagecorruptions backend: every corruption that is not one of lncli's own noise laws.

Blurs, weather and digital corruptions are served per image through the
installed ``imagecorruptions`` package (uint8 HWC numpy), seeded per image from
lncli's stream key so that they too depend only on (seed, noise, severity, index).
The ones broken on the current numpy / scikit-image stack fail with a clear
:class:`lncli.errors.LncliError`, as do images it cannot take (under 32 px, not 1
or 3 channels) and severities other than 1..5.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from lncli.errors import LncliError
from lncli.noise._seeding import NoiseFn, _block_seed, _Ctx
from lncli.noise.profiles import BACKEND_CORRUPTIONS

__all__ = ["BACKEND_CORRUPTIONS", "backend_noise"]

# Broken on numpy >= 2 / scikit-image >= 0.19 (checked with imagecorruptions 1.1.2).
_BROKEN = {
    "gaussian_blur": "calls skimage.filters.gaussian(multichannel=...), removed in scikit-image 0.19",
    "glass_blur": "calls skimage.filters.gaussian(multichannel=...), removed in scikit-image 0.19",
    "fog": "uses np.float_, removed in NumPy 2.0",
}


def _import_backend() -> Callable[..., np.ndarray]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources deprecation inside imagecorruptions
            from imagecorruptions import corrupt as ic_corrupt
    except Exception as exc:  # noqa: BLE001 - any failure (ImportError, no pkg_resources) means no backend
        raise LncliError(
            f"the imagecorruptions backend cannot be imported ({type(exc).__name__}: {exc}); "
            "install imagecorruptions and setuptools<81"
        ) from None
    return ic_corrupt


def backend_noise(name: str) -> NoiseFn:
    """The noise law that runs imagecorruptions' ``name`` per image.

    Args:
        name: one of :data:`BACKEND_CORRUPTIONS`.

    Returns:
        A :data:`lncli.noise.laws.NoiseFn`; its constant is the severity (1..5) itself.
    """

    def fn(x: Tensor, severity: float, ctx: _Ctx) -> Tensor:
        if name in _BROKEN:
            raise LncliError(f"corruption {name!r} is broken in imagecorruptions on this stack: {_BROKEN[name]}")
        if x.shape[-1] < 32 or x.shape[-2] < 32:
            raise LncliError(
                f"corruption {name!r} (imagecorruptions) needs images of at least 32x32 px, got {tuple(x.shape[-2:])}"
            )
        if x.shape[1] not in (1, 3):
            raise LncliError(f"corruption {name!r} (imagecorruptions) needs 1 or 3 channels, got {x.shape[1]}")
        ic_corrupt = _import_backend()
        sev = int(severity)
        if sev != severity or not 1 <= sev <= 5:
            raise LncliError(f"corruption {name!r} only has severities 1..5 (no custom param), got {severity}")
        u8 = x if x.dtype == torch.uint8 else x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        arr = u8.detach().cpu().permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        out = np.empty_like(arr)
        # imagecorruptions draws from numpy's global RNG; seed it per image from our
        # key and put the caller's state back afterwards.
        state = np.random.get_state()
        try:
            for r, i in enumerate(ctx.idx.tolist()):
                np.random.seed(_block_seed(ctx.key, i) & 0xFFFFFFFF)
                res = ic_corrupt(arr[r], severity=sev, corruption_name=name)  # (H, W, 3) uint8
                # Grayscale was stacked to RGB by imagecorruptions: average back to one channel.
                out[r] = res.mean(axis=2, keepdims=True).astype(np.uint8) if arr.shape[3] == 1 else res
        except LncliError:
            raise
        except Exception as exc:  # noqa: BLE001 - a third-party failure on user data becomes one clear line
            raise LncliError(f"imagecorruptions failed on {name!r}: {type(exc).__name__}: {exc}") from None
        finally:
            np.random.set_state(state)
        y = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(x.device)
        return y if x.dtype == torch.uint8 else y.to(x.dtype).div_(255.0)

    fn.__name__ = f"backend_{name}"
    return fn
