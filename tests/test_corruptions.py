"""Tests for lncli.corruptions: parity with imagecorruptions, seeding, shapes, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lncli.corruptions import (
    NOISES,
    PAPER_LEVELS,
    PROFILES,
    corrupt,
    list_noises,
    noise_param,
    rescale_minmax,
)
from lncli.errors import LncliError

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
    out = {(n, s): np.stack([ic_corrupt(photo, s, IC_NAME[n]) for _ in range(N_REF)]) for n in IC_NAME for s in range(1, 6)}
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
    import math

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


def test_constants():
    assert [noise_param("gaussian", s) for s in range(1, 6)] == [0.08, 0.12, 0.18, 0.26, 0.38]
    assert [noise_param("shot", s) for s in range(1, 6)] == [60, 25, 12, 5, 3]
    assert [noise_param("impulse", s) for s in range(1, 6)] == [0.03, 0.06, 0.09, 0.17, 0.27]
    assert [noise_param("gaussian_noise", s, "cifar-10-c") for s in range(1, 6)] == [0.04, 0.06, 0.08, 0.09, 0.10]
    assert [noise_param("shot", s, "cifar-10-c") for s in range(1, 6)] == [500, 250, 100, 75, 50]
    assert [noise_param("impulse", s, "cifar-10-c") for s in range(1, 6)] == [0.01, 0.02, 0.03, 0.05, 0.07]
    assert noise_param("gaussian", 0) == 0.0
    for noise in ("gaussian", "poisson", "dropout"):
        assert all(noise_param(noise, s, "paper") in PAPER_LEVELS[noise] for s in range(1, 6))
    assert noise_param("shot", 5, "paper") == noise_param("poisson", 5, "paper")  # alias


@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse", "speckle"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeding_invariant_to_batch_size(noise, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (70, 3, 12, 10), dtype=torch.uint8, generator=g)
    full = corrupt(x, noise, 3, seed=seed)
    for chunk in (1, 16, 33):
        parts = [corrupt(x[i : i + chunk], noise, 3, seed=seed, indices=range(i, min(i + chunk, 70))) for i in range(0, 70, chunk)]
        assert torch.equal(torch.cat(parts), full), f"chunk {chunk} differs"
    perm = torch.randperm(70, generator=g)
    assert torch.equal(corrupt(x[perm], noise, 3, seed=seed, indices=perm), full[perm])
    assert torch.equal(corrupt(x, noise, 3, seed=seed), full)  # deterministic
    assert not torch.equal(corrupt(x, noise, 3, seed=seed + 100), full)
    assert not torch.equal(corrupt(x, noise, 2, seed=seed), full)
    xf = x.to(torch.float32) / 255  # float path: its own draws, same invariance
    ff = corrupt(xf, noise, 3, seed=seed)
    parts = [corrupt(xf[i : i + 16], noise, 3, seed=seed, indices=range(i, min(i + 16, 70))) for i in range(0, 70, 16)]
    assert torch.equal(torch.cat(parts), ff)
    assert torch.equal(corrupt(xf[perm], noise, 3, seed=seed, indices=perm), ff[perm])


@pytest.mark.parametrize("profile", ["imagenet-c", "cifar-10-c", "paper"])
def test_grayscale_and_28x28(profile):
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    for noise in list_noises(profile)[:3]:
        y = corrupt(x, noise, 4, seed=0, profile=profile)
        assert y.shape == x.shape and y.dtype == torch.uint8
        assert not torch.equal(y, x)


@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse", "speckle"])
def test_float_input(noise):
    x = torch.rand(6, 3, 20, 20, dtype=torch.float64)
    y = corrupt(x, noise, 3, seed=0)
    assert y.dtype == torch.float64 and y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.equal(y, x)
    # Same law as the uint8 path: the mean shift is small compared with the noise.
    xu = (x * 255).to(torch.uint8)
    yu = corrupt(xu, noise, 3, seed=0).double() / 255
    assert abs(float(y.mean() - yu.mean())) < 0.02


def test_float_input_not_modified_in_place():
    x = torch.rand(4, 3, 8, 8)
    x0 = x.clone()
    for noise in ("gaussian", "speckle", "impulse"):
        corrupt(x, noise, 5, seed=0)
    corrupt(x, "gaussian", 5, seed=0, profile="paper")
    assert torch.equal(x, x0)


def test_severity_zero_is_clean_copy():
    x = torch.randint(0, 256, (3, 3, 9, 9), dtype=torch.uint8)
    y = corrupt(x, "shot", 0, seed=0)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


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


def test_custom_param():
    x = torch.full((2, 1, 30, 30), 128, dtype=torch.uint8)
    a = corrupt(x, "impulse", 1, seed=0, param=0.5)
    assert 0.4 < float((a != 128).float().mean()) < 0.6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": torch.zeros(2, 3, 8, 8, dtype=torch.int32)}, "dtype"),
        ({"images": torch.zeros(1, 2, 3, 8, 8, dtype=torch.uint8)}, "4-D"),
        ({"images": torch.full((1, 3, 8, 8), 2.0)}, r"\[0, 1\]"),
        ({"severity": 6}, "severity"),
        ({"severity": -1}, "severity"),
        ({"noise": "pink"}, "gaussian, shot, impulse"),
        ({"profile": "imagenet"}, "imagenet-c, cifar-10-c, paper"),
        ({"indices": [0]}, "indices"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"images": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "noise": "gaussian", "severity": 1, **kwargs}
    with pytest.raises(LncliError, match=match):
        corrupt(args.pop("images"), args.pop("noise"), args.pop("severity"), seed=0, **args)


def test_backend_corruptions():
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    y = corrupt(x, "contrast", 3, seed=0)
    assert y.shape == x.shape and y.dtype == torch.uint8
    g = corrupt(x[:, :1], "motion_blur", 2, seed=0)
    assert g.shape == (2, 1, 32, 32)
    assert torch.equal(corrupt(x, "motion_blur", 2, seed=0), corrupt(x, "motion_blur", 2, seed=0))
    with pytest.raises(LncliError, match="broken"):
        corrupt(x, "glass_blur", 1, seed=0)
    with pytest.raises(LncliError, match="32x32"):
        corrupt(x[:, :, :28, :28], "contrast", 1, seed=0)
    assert set(NOISES) >= {"gaussian", "shot", "impulse"} and set(PROFILES) == {"imagenet-c", "cifar-10-c", "paper"}


@pytest.mark.cuda
@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse"])
def test_cuda_matches_cpu(noise):
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    cpu = corrupt(x, noise, 3, seed=0)
    gpu = corrupt(x.cuda(), noise, 3, seed=0)
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu), f"max diff {(gpu.cpu().int() - cpu.int()).abs().max()}"


@pytest.mark.parametrize(
    ("builder", "param"),
    [("gaussian", 0.38), ("speckle", 0.15), ("shot", 3.0), ("shot", 500.0), ("impulse", 0.27)],
)
def test_alias_tables_reproduce_the_pmf_exactly(builder, param):
    """The alias tables' implied law equals the float64 pmf up to the 2**-32 grid."""
    import lncli.corruptions as C

    table = {"gaussian": C._gaussian_table, "speckle": C._speckle_table, "shot": C._shot_table, "impulse": C._impulse_table}[builder](param)
    q = table.q.view(256, 256).long().numpy()
    a = table.alias.view(256, 256).long().numpy()
    implied = np.zeros((256, 256))
    rows = np.repeat(np.arange(256), 256).reshape(256, 256)
    np.add.at(implied, (rows, np.tile(np.arange(256), (256, 1))), q)
    np.add.at(implied, (rows, a), (1 << 24) - q)
    implied /= 2.0**32
    if builder == "gaussian":
        pmf = C._pmf_from_cdf(C._level_cdf_from_z(((C._K + 1) / 255.0 - C._V / 255.0) / param))
    elif builder == "impulse":
        pmf = np.eye(256) * (1 - param)
        pmf[:, 0] += param / 2
        pmf[:, 255] += param / 2
    else:
        pmf = None  # shot / speckle: check normalisation and support only
    assert np.allclose(implied.sum(1), 1.0, rtol=0, atol=1e-12)
    assert (q >= 0).all() and (q <= 1 << 24).all()
    if pmf is not None:
        err = np.abs(implied - pmf / pmf.sum(1, keepdims=True)).max()
        assert err <= 2.0**-31, f"max |implied - pmf| = {err:.3g}"


def test_threads_do_not_change_results():
    x = torch.randint(0, 256, (300, 3, 16, 16), dtype=torch.uint8)
    for n in ("gaussian", "shot", "impulse"):
        assert torch.equal(corrupt(x, n, 4, seed=3), corrupt(x, n, 4, seed=3, num_threads=3)), n


def test_packed_table_matches_two_table_alias():
    import lncli.corruptions as C

    table = C._shot_table(12.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200_000,), dtype=torch.uint8, generator=g)
    m = torch.randint(-(1 << 31), 1 << 31, (200_000,), dtype=torch.int64, generator=g).to(torch.int32)
    got = table.sample(x, m.clone())  # sample() uses its words as scratch
    cell = (m & 255).long()
    row = x.long() * 256 + cell
    t = (m.long() >> 8) & 0xFFFFFF
    want = torch.where(t < table.q.long()[row], cell, table.alias.long()[row]).to(torch.uint8)
    assert torch.equal(got, want), f"{int((got != want).sum())} mismatches"


def _random_sampler_inputs(n: int, seed: int):
    """Random uint8 levels, 16-bit words and block positions for the fast uint8 samplers."""
    import lncli.corruptions as C

    rng = np.random.default_rng(seed)
    numel = 97  # odd on purpose: positions cross image rows
    v = rng.integers(0, 256, n * numel, dtype=np.uint8)
    h = rng.integers(0, 1 << 16, n * numel, dtype=np.uint16)
    at = C._Positions(rng.integers(0, 1 << 63, n, dtype=np.uint64), rng.integers(0, 1000, n).astype(np.int64), numel)
    return v, h, at


@pytest.mark.parametrize(
    ("builder", "param"),
    [("gaussian", 0.08), ("gaussian", 0.38), ("gaussian", 0.0), ("speckle", 0.35), ("shot", 12.0), ("shot", 500.0), ("impulse", 0.09), ("impulse", 1.0)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_samplers_equal_exact_inverse_cdf(builder, param, seed):
    """Fast table + slow path == the plain inverse CDF of the 2**-32-grid law at the full 32-bit u,
    element by element (impure cells included), and the torch (accelerator) path is bit-identical."""
    import lncli.corruptions as C

    v, h, at = _random_sampler_inputs(4000, seed)
    sampler = {"gaussian": C._gaussian_sampler, "speckle": C._speckle_sampler, "shot": C._shot_sampler, "impulse": C._impulse_sampler}[builder](param)
    got = np.empty_like(v)
    sampler.sample_np(v, h, at, got)
    allpos = np.arange(v.size, dtype=np.int64)
    u = at.u(h, allpos)  # (E,) int64 in [0, 2**32)
    if builder == "gaussian":
        d = np.searchsorted(sampler.cdf, u, side="right") - 255
        want = np.clip(v.astype(np.int64) + d, 0, 255)
    elif builder == "impulse":
        want = np.where(u < sampler.w, 255, np.where(u < 2 * sampler.w, 0, v))
    else:
        w = C._weights_from_pmf(C._speckle_pmf(param) if builder == "speckle" else C._shot_pmf(param))
        cdf = np.cumsum(w, axis=1)  # the same integer weights as the alias tables
        want = (cdf[v.astype(np.int64), :255] <= u[:, None]).sum(axis=1)
    mism = int((got != want).sum())
    assert mism == 0, f"{builder}({param}): {mism} of {v.size} elements differ from the exact inverse CDF"
    t = sampler.sample_t(torch.from_numpy(v), torch.from_numpy(h.astype(np.int32)), at).numpy()
    assert np.array_equal(t, got), f"torch path differs in {int((t != got).sum())} elements"


@pytest.mark.parametrize("sigma", [0.04, 0.18, 0.38])
def test_gaussian_shift_law_matches_pmf(sigma):
    """clamp(v + D): the implied (256, 256) law is within 2**-32 of the float64 pmf, tails included."""
    import lncli.corruptions as C

    cdf = np.concatenate([[0], C._gaussian_sampler(sigma).cdf]).astype(np.float64) / 2.0**32
    p_d = np.diff(cdf)  # P(D = d), d = -255..255
    law = np.zeros((256, 256))
    for v in range(256):
        np.add.at(law[v], np.clip(v + np.arange(-255, 256), 0, 255), p_d)
    pmf = C._pmf_from_cdf(C._level_cdf_from_z(((C._K + 1) / 255.0 - C._V / 255.0) / sigma))
    err = np.abs(law - pmf).max()
    assert err <= 2.0**-32, f"max |implied - pmf| = {err:.3g}"


def test_impulse_thresholds_match_pmf():
    import lncli.corruptions as C

    for a in (0.01, 0.09, 0.27, 1.0):
        w = C._impulse_sampler(a).w
        assert abs(w / 2.0**32 - a / 2) <= 2.0**-33, a


def test_uint8_threads_and_scattered_indices_identical():
    x = torch.randint(0, 256, (200, 3, 33, 31), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    idx = torch.arange(1000, 1200)
    for noise in ("gaussian", "shot", "impulse", "speckle"):
        full = corrupt(x, noise, 5, seed=9, indices=idx)
        assert torch.equal(full, corrupt(x, noise, 5, seed=9, indices=idx, num_threads=2)), noise
        perm = torch.randperm(200, generator=torch.Generator().manual_seed(1))
        assert torch.equal(corrupt(x[perm], noise, 5, seed=9, indices=idx[perm]), full[perm]), noise


@pytest.mark.parametrize("numba_on", ["1", "0"])
def test_uint8_streams_are_pinned(monkeypatch, numba_on):
    """The uint8 noise streams are a contract (saved dataset-C files and committed results
    depend on them): this digest was taken from the release before the numba kernels and
    must not change with the backend, a table layout or a refactor."""
    import hashlib

    monkeypatch.setenv("LNCLI_NUMBA", numba_on)
    x = torch.arange(2 * 3 * 11 * 13).remainder(256).to(torch.uint8).view(2, 3, 11, 13).repeat(40, 1, 1, 1)
    digest = hashlib.blake2b(digest_size=8)
    for noise in ("gaussian", "shot", "impulse", "speckle"):
        digest.update(corrupt(x, noise, 3, seed=2026, indices=torch.arange(80) * 3 + 100000).numpy().tobytes())
    assert digest.hexdigest() == "2a7a39d422d15931"
