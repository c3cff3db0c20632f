"""The profile registry (lncli.noise.profiles): constants, aliases and name resolution."""

from __future__ import annotations

from lncli.noise import PAPER_LEVELS, noise_param


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
