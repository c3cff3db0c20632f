"""lncli's preprocessing against timm's own evaluation transform, on image files of odd sizes.

For a timm data config (``timm.data.resolve_data_config``: input size, ``crop_pct``, ``crop_mode``,
interpolation, mean, std), lncli reads a file as evaluate does (:func:`lncli.images.decode_image`
with the resolved meta, then :func:`lncli.data.normalize`) and timm as its users do
(``timm.data.create_transform(**cfg)`` on ``Image.open(path).convert("RGB")``).

Tolerance: none. The two tensors are ``torch.equal``: lncli resizes, crops and pads the Pillow image
with the same torchvision calls and integer offsets as timm, then converts and normalises with the
same float32 operations, so nothing is left to round differently. Resolving a configuration
downloads no weights.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lncli.config.common import CROP_MODES
from lncli.data import DataMeta, normalize
from lncli.data.preprocess import apply_preprocess, resolve_preprocess, timm_config_layer
from lncli.images import decode_image

SIZES = ((37, 53), (61, 29), (45, 44))
"""(H, W) of the test images: landscape, portrait and almost square, all odd-sized against every crop."""

_KEY = ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std")


@functools.cache
def pretrained_configs() -> dict[tuple[Any, ...], tuple[str, dict[str, Any]]]:
    """Every distinct preprocessing configuration of ``timm.list_pretrained()`` (first model name for each)."""
    import timm
    import timm.data
    import timm.models

    seen: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    for name in timm.list_pretrained():
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            continue
        conf = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
        key = tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in (conf[k] for k in _KEY))
        seen.setdefault(key, (name, conf))
    return seen


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate(SIZES):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def check_parity(name: str, conf: dict[str, Any], paths: list[Path]) -> None:
    """Assert that lncli's input equals timm's for every image (the model name is in the message)."""
    import timm.data

    transform = timm.data.create_transform(**conf)
    blank = DataMeta("timm", 1000, 3, (1, 1), (0.0,), (1.0,))
    meta = apply_preprocess(blank, resolve_preprocess([timm_config_layer(conf, name)], 3))
    for path in paths:
        with Image.open(path) as im:
            want = transform(im.convert("RGB"))  # (3, H, W) float32, normalised
        x = decode_image(
            path,
            channels=3,
            image_size=meta.image_size,
            resize=meta.resize_to,
            interpolation=meta.interpolation,
            crop_mode=meta.crop_mode,
            fill=meta.fill,
        )
        got = normalize(x[None], meta)[0]  # (3, H, W)
        where = f"{name} {conf} on a {Image.open(path).size} image"
        assert got.shape == want.shape, f"{where}: shape {tuple(got.shape)} vs timm's {tuple(want.shape)}"
        err = float((got - want).abs().max())
        assert torch.equal(got, want), f"{where}: max error {err}"


def _representatives() -> list[tuple[str, dict[str, Any]]]:
    """The smallest-input configuration of each (crop_mode, interpolation) timm uses, plus the geometry the
    large ones alone have, at a small size: timm's own transform on configs shaped like VOLO's crop_pct 1.15
    (the crop pads) and like Sapiens2's non-square squash."""
    groups: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for name, conf in pretrained_configs().values():
        key = (conf["crop_mode"], conf["interpolation"])
        if key not in groups or conf["input_size"][1] < groups[key][1]["input_size"][1]:
            groups[key] = (name, conf)
    small = {"interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    extra = [
        (f"{mode}-pct1.15", {**small, "input_size": (3, 64, 64), "crop_pct": 1.15, "crop_mode": mode})
        for mode in CROP_MODES
    ]
    # Non-square crops at crop_pct 1, as timm's only one (lncli keeps one resize number: see resize_crop).
    extra += [
        (f"{mode}-64x48", {**small, "input_size": (3, 64, 48), "crop_pct": 1.0, "crop_mode": mode})
        for mode in ("squash", "border")
    ]
    return sorted(groups.values(), key=lambda nc: nc[0]) + extra


def test_the_sweep_covers_every_crop_mode_and_interpolation() -> None:
    """What the representatives stand for: timm's pretrained configurations use every crop mode."""
    configs = [conf for _, conf in pretrained_configs().values()]
    assert len(configs) > 100  # 173 distinct ones with timm 1.0.31: the slow test runs them all
    assert {c["crop_mode"] for c in configs} == set(CROP_MODES)
    assert any(c["crop_pct"] > 1 for c in configs) and any(c["input_size"][1] != c["input_size"][2] for c in configs)


@pytest.mark.parametrize(("name", "conf"), _representatives(), ids=lambda v: v if isinstance(v, str) else "")
def test_lncli_reads_files_as_timm_representatives(name: str, conf: dict[str, Any], odd_images: list[Path]) -> None:
    check_parity(name, conf, odd_images)


@pytest.mark.slow
def test_lncli_reads_files_as_timm_every_pretrained_config(odd_images: list[Path]) -> None:
    """Every distinct configuration (50-90 s on 2 busy cores: the crops go up to 1024 px)."""
    for name, conf in pretrained_configs().values():
        check_parity(name, conf, odd_images)
