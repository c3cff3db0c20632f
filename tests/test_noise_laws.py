"""The noise laws (lncli.noise.laws) against independent references.

ImageNet-C's four noises are compared with imagecorruptions 1.1.2 itself, per
input-intensity bin, on a real photo; shot noise with its closed-form mean; the
paper protocol's laws with their defining properties.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from lncli.noise import corrupt, rescale_minmax

N_REF = 64  # replicas of the photo: enough elements per intensity bin for tight bounds
SIZE = 40  # >= 32, the smallest size imagecorruptions accepts
IC_NAME = {"gaussian": "gaussian_noise", "shot": "shot_noise", "impulse": "impulse_noise", "speckle": "speckle_noise"}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut), resized to SIZE x SIZE, uint8 HWC."""
    skimage_data = pytest.importorskip("skimage.data")
    from skimage.transform import resize

    return (resize(skimage_data.astronaut(), (SIZE, SIZE), anti_aliasing=True) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reference(photo: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """imagecorruptions output for every (noise, severity): uint8 (N_REF, H, W, 3)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from imagecorruptions import corrupt as ic_corrupt
    state = np.random.get_state()
    np.random.seed(1234)
    out = {
        (n, s): np.stack([ic_corrupt(photo, s, IC_NAME[n]) for _ in range(N_REF)]) for n in IC_NAME for s in range(1, 6)
    }
    np.random.set_state(state)
    return out


@pytest.fixture(scope="module")
def batch(photo: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(photo).permute(2, 0, 1).unsqueeze(0).repeat(N_REF, 1, 1, 1).contiguous()  # (N, 3, H, W)


def _bin_stats(inp: np.ndarray, out: np.ndarray, bins: int = 16) -> tuple[np.ndarray, ...]:
    """Per input-intensity bin: count, mean, std and standard errors of mean and std of the output."""
    b = inp.reshape(-1).astype(np.int64) * bins // 256
    o = out.reshape(-1).astype(np.float64)
    cnt = np.maximum(np.bincount(b, minlength=bins).astype(np.float64), 1)
    mean = np.bincount(b, o, minlength=bins) / cnt
    d = o - mean[b]
    var = np.bincount(b, d**2, minlength=bins) / cnt
    m4 = np.bincount(b, d**4, minlength=bins) / cnt
    std = np.sqrt(var)
    se_mean = np.sqrt(var / cnt)
    # Delta method, valid for heavy-tailed laws such as salt & pepper: Var(s^2) ~ (m4 - s^4) / n.
    se_std = np.sqrt(np.maximum(m4 - var**2, 0) / cnt) / (2 * np.maximum(std, 1e-9))
    return cnt, mean, std, se_mean, se_std


def _parity_errors(inp: np.ndarray, ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Worst per-bin |mean diff| and |std diff| in units of their standard errors."""
    cnt, m1, s1, em1, es1 = _bin_stats(inp, ours)
    _, m2, s2, em2, es2 = _bin_stats(inp, ref)
    ok = cnt >= 200
    # + 0.5 / sqrt(n) of slack: both sides truncate to integer levels.
    slack = 0.5 / np.sqrt(cnt)
    zm = (np.abs(m1 - m2) / (np.hypot(em1, em2) + slack))[ok]
    zs = (np.abs(s1 - s2) / (np.hypot(es1, es2) + slack))[ok]
    return float(zm.max()), float(zs.max())


# Tolerance: per-bin differences of mean and std must stay within Z_TOL standard
# errors (16 bins x 2 stats x 20 cases: 6 SE keeps false alarms negligible).
Z_TOL = 6.0


@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse", "speckle"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_parity_with_imagecorruptions(noise, severity, batch, reference):
    inp = batch.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    ours = corrupt(batch, noise, severity, seed=severity).permute(0, 2, 3, 1).numpy()
    zm, zs = _parity_errors(inp, ours, reference[(noise, severity)])
    assert zm < Z_TOL and zs < Z_TOL, f"{noise} s{severity}: max mean z={zm:.2f}, max std z={zs:.2f} (tol {Z_TOL})"


@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse", "speckle"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_shifted_constant_would_fail(noise, severity, batch, reference):
    """The parity check is sharp: our output at severity s must NOT match the reference at s +- 1."""
    inp = batch.permute(0, 2, 3, 1).numpy()
    ours = corrupt(batch, noise, severity, seed=severity).permute(0, 2, 3, 1).numpy()
    for other in (severity - 1, severity + 1):
        if 1 <= other <= 5:
            zm, zs = _parity_errors(inp, ours, reference[(noise, other)])
            assert max(zm, zs) > Z_TOL, f"{noise} s{severity} vs s{other} indistinguishable: z={max(zm, zs):.2f}"


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_impulse_changed_fraction(severity, batch, reference):
    ours = corrupt(batch, "impulse", severity, seed=7).numpy()
    ref = reference[("impulse", severity)].transpose(0, 3, 1, 2)
    base = batch.numpy()
    f_ours, f_ref = (ours != base).mean(), (ref != base).mean()
    se = np.sqrt(2 * f_ref * (1 - f_ref) / base.size)
    assert abs(f_ours - f_ref) < 6 * se, f"changed fraction {f_ours:.5f} vs {f_ref:.5f} (6 SE = {6 * se:.5f})"
    # Only salt (255) or pepper (0) may appear where something changed.
    changed = ours != base
    assert np.isin(ours[changed], (0, 255)).all()


def test_shot_sampler_is_exact_per_intensity():
    """Per-intensity mean of the shot sampler vs the closed form E[floor(min(k/l, 1) * 255)]."""
    lam = 12.0
    levels = torch.arange(256, dtype=torch.uint8)
    x = levels.view(1, 1, 1, 256).repeat(400, 1, 1, 1)  # (400, 1, 1, 256): 400 draws per level
    y = corrupt(x, "shot", 3, seed=0).double()  # imagenet-c severity 3 is lambda = 12
    for v in (0, 1, 64, 128, 200, 255):
        mu = v / 255 * lam
        k = np.arange(60)
        pk = np.exp(k * math.log(mu) - mu - np.array([math.lgamma(j + 1) for j in k])) if mu > 0 else (k == 0) * 1.0
        out = np.floor(np.clip(k / lam, 0, 1) * 255)
        mean = float((pk * out).sum())
        sd = float(np.sqrt((pk * (out - mean) ** 2).sum()))
        got = float(y[:, 0, 0, v].mean())
        assert abs(got - mean) <= 6 * sd / 20 + 1e-9, f"v={v}: mean {got:.3f} vs exact {mean:.3f}"


def test_paper_profile():
    x = torch.full((4, 3, 16, 16), 0.5)
    y = corrupt(x, "gaussian", 5, seed=0, profile="paper")  # x (1 + 5 U): in [0.5, 3)
    assert float(y.min()) >= 0.5 and float(y.max()) > 1.0  # not clipped for float input
    d = corrupt(x, "dropout", 3, seed=0, profile="paper")  # p = 0.3, mask shared over channels
    zero = d == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    assert abs(float(zero[:, 0].float().mean()) - 0.3) < 0.05
    p = corrupt(x, "poisson", 5, seed=0, profile="paper")  # x (1 + Poisson(1))
    assert abs(float((p / 0.5 - 1).mean()) - 1.0) < 0.1
    u8 = corrupt((x * 255).to(torch.uint8), "gaussian", 5, seed=0, profile="paper")
    assert u8.dtype == torch.uint8  # uint8 output must clip
    r = rescale_minmax(y)
    assert abs(float(r.amin()) - 0.0) < 1e-6 and abs(float(r.amax()) - 1.0) < 1e-6
