"""lncli.data.preprocess: who says how images become a model's input (the precedence table), the flags'
grammar, timm's convention, and the tensor path against Pillow's."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lncli.checkpoint import NormSpec, checkpoint_from_model, load_checkpoint, save_checkpoint
from lncli.data import DATASETS, IMAGENET_MEAN, IMAGENET_STD, DataMeta
from lncli.data.preprocess import (
    IMAGENET,
    LUMA,
    PRESETS,
    Origin,
    PreprocessLayer,
    apply_preprocess,
    as_channels,
    parse_flags,
    resolve_preprocess,
    timm_layer,
    to_input,
    unrecorded_note,
)
from lncli.errors import DataError, LncliError
from lncli.images import convert_channels, resize_crop
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.testset import _layers, has_recorded_preprocessing
from lncli.models import create_model

C10 = DATASETS["cifar10"]
FM = DATASETS["fashion-mnist"]
TIMM = PreprocessLayer((288, 288), 303, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic", "squash", "timm", "m")
RECORDED = PreprocessLayer((64, 64), 72, (0.4, 0.4, 0.4), (0.2, 0.2, 0.2), "nearest", None, "checkpoint")
DATASET = PreprocessLayer.of_meta(C10, "dataset")

# (id, layers highest first, channels) -> (image_size, resize, mean, std, interpolation[, crop_mode: center])
PRECEDENCE = [
    ("imagenet-only", [IMAGENET], 3, ((224, 224), 256, IMAGENET_MEAN, IMAGENET_STD, "bilinear")),
    ("timm-over-imagenet", [TIMM, IMAGENET], 3, ((288, 288), 303, TIMM.mean, TIMM.std, "bicubic", "squash")),
    ("dataset-over-timm", [DATASET, TIMM, IMAGENET], 3, ((32, 32), 32, C10.mean, C10.std, "bilinear")),
    ("checkpoint-over-dataset", [RECORDED, DATASET, TIMM, IMAGENET], 3, ((64, 64), 72, RECORDED.mean, RECORDED.std, "nearest")),
    # the crop mode is its own field: a layer that does not say it lets a lower one (timm's) say it.
    ("crop-mode-from-timm", [RECORDED, TIMM, IMAGENET], 3, ((64, 64), 72, RECORDED.mean, RECORDED.std, "nearest", "squash")),
    ("crop-mode-flag", [parse_flags(crop_mode="border"), TIMM], 3, ((288, 288), 303, TIMM.mean, TIMM.std, "bicubic", "border")),
    (
        "flags-over-all",
        [parse_flags(image_size=100, resize=120, mean="none", interpolation="bicubic"), RECORDED, IMAGENET],
        3,
        ((100, 100), 120, (0.0,) * 3, (1.0,) * 3, "bicubic"),
    ),
    # --image-size alone: the resize is not taken from a lower layer (timm's 303 was for 288).
    ("size-flag-keeps-lower-resize-out", [parse_flags(image_size=160), TIMM, IMAGENET], 3, ((160, 160), 160, TIMM.mean, TIMM.std, "bicubic", "squash")),
    # --resize alone: applies to the lower layer's crop.
    ("resize-flag-alone", [parse_flags(resize=300), TIMM, IMAGENET], 3, ((288, 288), 300, TIMM.mean, TIMM.std, "bicubic", "squash")),
    # a preset for --mean sets --std too; numbers for --mean only set the mean.
    ("mean-preset-sets-std", [parse_flags(mean="cifar10"), TIMM, IMAGENET], 3, ((288, 288), 303, C10.mean, C10.std, "bicubic", "squash")),
    ("mean-numbers-only", [parse_flags(mean="0.1,0.2,0.3"), TIMM, IMAGENET], 3, ((288, 288), 303, (0.1, 0.2, 0.3), TIMM.std, "bicubic", "squash")),
    ("std-preset-sets-mean", [parse_flags(std="imagenet"), TIMM], 3, ((288, 288), 303, IMAGENET_MEAN, IMAGENET_STD, "bicubic", "squash")),
    ("one-value-every-channel", [parse_flags(mean="0.5", std="0.25"), IMAGENET], 3, ((224, 224), 256, (0.5,) * 3, (0.25,) * 3, "bilinear")),
    # a one-channel model: three constants become their luma.
    (
        "gray-model-luma",
        [IMAGENET],
        1,
        ((224, 224), 256, (sum(w * v for w, v in zip(LUMA, IMAGENET_MEAN)),), (sum(w * v for w, v in zip(LUMA, IMAGENET_STD)),), "bilinear"),
    ),
    ("fashion-mnist-recorded", [PreprocessLayer(origin="flags"), PreprocessLayer.of_meta(FM, "checkpoint"), IMAGENET], 1, ((28, 28), 28, FM.mean, FM.std, "bilinear")),
]  # fmt: skip


@pytest.mark.parametrize(("layers", "channels", "want"), [p[1:] for p in PRECEDENCE], ids=[p[0] for p in PRECEDENCE])
def test_precedence_table(layers: list[PreprocessLayer], channels: int, want: tuple) -> None:
    got = resolve_preprocess(layers, channels)
    size, resize, mean, std, interp, crop_mode = want if len(want) == 6 else (*want, "center")
    assert (got.image_size, got.resize, got.interpolation, got.crop_mode) == (size, resize, interp, crop_mode)
    assert got.mean == pytest.approx(mean, rel=1e-12) and got.std == pytest.approx(std, rel=1e-12)


def test_origin_names_who_said_each_field() -> None:
    got = resolve_preprocess([parse_flags(image_size=160), TIMM, IMAGENET], 3)
    assert got.origin == "image_size=flags,resize=crop,interpolation=timm,crop_mode=timm,mean=timm,std=timm"
    assert got.origin_of("mean") == Origin("timm", "m") and str(got.origin_of("mean")) == "timm's config of m"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"image_size": 0}, "--image-size must be >= 1"),
        ({"resize": -3}, "--resize must be >= 1"),
        ({"interpolation": "lanczos"}, "unknown --interpolation 'lanczos'"),
        (
            {"crop_mode": "squish"},
            "unknown --crop-mode 'squish' (did you mean 'squash'?); valid: center, squash, border",
        ),
        ({"mean": "imagenette"}, "--mean 'imagenette' is not 1 or 3"),
        ({"mean": "0.1,0.2"}, "is not 1 or 3"),
        ({"std": "0.1,x,0.3"}, "--std"),
        ({"mean": "nan"}, "--mean"),
        ({"std": "0,1,1"}, "--std must be > 0"),
    ],
)
def test_bad_flags_are_one_line(kwargs: dict, needle: str) -> None:
    with pytest.raises(LncliError) as info:
        parse_flags(**kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_resolution_refusals() -> None:
    with pytest.raises(DataError, match="the mean has 3 values for 2-channel"):
        resolve_preprocess([IMAGENET], 2)
    with pytest.raises(DataError, match="no preprocessing layer says the image_size, interpolation, crop_mode, mean"):
        resolve_preprocess([PreprocessLayer(origin="flags")], 3)
    # A resize below the crop is torchvision's CenterCrop padding (timm's crop_pct > 1): allowed.
    assert resolve_preprocess([parse_flags(resize=100), IMAGENET], 3).resize == 100
    assert as_channels((0.5,), 3, "x") == (0.5, 0.5, 0.5) and as_channels((1.0, 2.0, 3.0), 3, "x") == (1.0, 2.0, 3.0)
    assert set(PRESETS) == {"imagenet", "cifar10", "none"}


@pytest.mark.parametrize("name", ["resnet18", "vit_base_patch16_224", "efficientnet_b0"])
def test_timm_layer_is_timms_own_convention(name: str) -> None:
    import timm.data
    import timm.models

    layer = timm_layer(f"timm:{name}")
    conf = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
    assert layer is not None and layer.image_size == tuple(conf["input_size"][1:])
    assert layer.resize == math.floor(conf["input_size"][1] / conf["crop_pct"])  # timm's eval transform
    assert (layer.mean, layer.std, layer.interpolation, layer.crop_mode) == (
        tuple(conf["mean"]),
        tuple(conf["std"]),
        conf["interpolation"],
        conf["crop_mode"],
    )
    assert timm_layer(name) is None and timm_layer("timm:no_such_model_xyz") is None


def _loaded(tmp_path: Path, data: DataMeta, **provenance: object) -> LoadedCheckpoint:
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=data.num_classes, in_channels=data.in_channels)
    ck = checkpoint_from_model(
        model, arch="tiny", arch_kwargs={}, norm=NormSpec(), data=data, provenance=dict(provenance)
    )
    return LoadedCheckpoint(str(tmp_path / "m.pt"), "0" * 64, ck)


def test_only_lncli_checkpoints_record_preprocessing(tmp_path: Path) -> None:
    """A foreign state_dict's meta was made from --data: its layer is skipped until convert writes it."""
    mine = _loaded(tmp_path, RECORDED_META)
    foreign = _loaded(tmp_path, RECORDED_META, source="x.pt", foreign="bare state_dict")
    converted = _loaded(tmp_path, RECORDED_META, source="x.pt", foreign="bare state_dict", conversions=[{}])
    assert has_recorded_preprocessing(mine.checkpoint) and has_recorded_preprocessing(converted.checkpoint)
    assert not has_recorded_preprocessing(foreign.checkpoint)
    flags = [PreprocessLayer(origin="flags")]
    assert resolve_preprocess(_layers(mine, flags, []), 3).image_size == (64, 64)
    assert resolve_preprocess(_layers(foreign, flags, []), 3).image_size == (224, 224)  # ImageNet's
    timm_foreign = dataclasses.replace(
        foreign, checkpoint=dataclasses.replace(foreign.checkpoint, arch="timm:resnet18")
    )
    assert resolve_preprocess(_layers(timm_foreign, flags, []), 3).interpolation == "bicubic"  # timm's, over ImageNet's


RECORDED_META = DataMeta("imagefolder", 10, 3, (64, 64), (0.4,) * 3, (0.2,) * 3, resize=72, interpolation="nearest")


def test_new_meta_fields_round_trip_and_stay_out_at_their_defaults(tmp_path: Path) -> None:
    """Old checkpoints load; a meta at the defaults writes the bytes it always wrote."""
    for meta in DATASETS.values():
        assert not {"resize", "interpolation", "crop_mode"} & set(meta.to_dict())
    d = RECORDED_META.to_dict()
    assert (d["resize"], d["interpolation"]) == (72, "nearest") and DataMeta.from_dict(d) == RECORDED_META
    assert "crop_mode" not in d and DataMeta.from_dict(d).crop_mode == "center"  # older files read as center
    squash = dataclasses.replace(RECORDED_META, crop_mode="squash")
    assert squash.to_dict()["crop_mode"] == "squash" and DataMeta.from_dict(squash.to_dict()) == squash
    with pytest.raises(DataError, match="interpolation 'cubic'"):
        DataMeta.from_dict({**d, "interpolation": "cubic"})
    with pytest.raises(DataError, match="crop_mode 'squish'"):
        DataMeta.from_dict({**d, "crop_mode": "squish"})
    resolved = apply_preprocess(FM, resolve_preprocess([parse_flags(image_size=32, mean="none"), IMAGENET], 1))
    assert (resolved.image_size, resolved.resize, resolved.mean, resolved.in_channels) == ((32, 32), 32, (0.0,), 1)
    ck = _loaded(tmp_path, RECORDED_META).checkpoint
    save_checkpoint(ck, tmp_path / "r.pt")
    assert load_checkpoint(tmp_path / "r.pt").data == RECORDED_META


@pytest.mark.parametrize("seed", range(3))
def test_convert_channels_is_pillows_luma(seed: int) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2)  # (2, 3, 9, 7)
    gray = convert_channels(x, 1)
    want = np.stack([np.asarray(Image.fromarray(a).convert("L")) for a in rgb])[:, None]  # (2, 1, 9, 7)
    assert torch.equal(gray, torch.from_numpy(want))
    assert torch.equal(convert_channels(gray, 3), gray.expand(-1, 3, -1, -1))
    assert convert_channels(x, 3) is x


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize(("crop_mode", "resize"), [("center", 20), ("squash", 20), ("border", 20), ("center", 14)])
def test_tensor_resize_crop_follows_pillows(seed: int, interpolation: str, crop_mode: str, resize: int) -> None:
    """In-memory data is resized like image files: Pillow's pixels for nearest, within one grey level for
    bilinear; bicubic's kernel differs (torch's a=-0.75, Pillow's a=-0.5): a few levels on pure noise, the worst case.
    The crop and its padding (border's, and a resize below the crop) are the same pixels exactly."""
    rgb = np.random.default_rng(seed).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    fill = (7, 100, 250)
    pil = np.array(resize_crop(Image.fromarray(rgb), (16, 16), resize, interpolation, crop_mode, fill))  # (16, 16, 3)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # (1, 3, 30, 44)
    ten = resize_crop(x, (16, 16), resize, interpolation, crop_mode, fill)[0]  # (3, 16, 16)
    if crop_mode == "border" or resize < 16:  # padded rows or columns: exactly the fill, on both paths
        pad = (torch.from_numpy(pil) == torch.tensor(fill)).all(-1)  # (16, 16)
        assert 0 < int(pad.sum()) < 256 and bool((ten.permute(1, 2, 0)[pad] == torch.tensor(fill)).all())
    err = (ten.permute(1, 2, 0).int() - torch.from_numpy(pil).int()).abs()
    max_tol, mean_tol = {"nearest": (0, 0.0), "bilinear": (1, 0.3), "bicubic": (8, 0.5)}[interpolation]
    msg = f"max error {int(err.max())}, mean {err.float().mean():.3f} grey levels"
    assert pil.shape == (16, 16, 3) and int(err.max()) <= max_tol and float(err.float().mean()) <= mean_tol, msg


def test_to_input_fast_path_and_conversion() -> None:
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert to_input(x, FM) is x  # stored as the model reads it: untouched
    rgb32 = dataclasses.replace(C10, resize=None)
    y = to_input(x, rgb32)  # gray 28 -> RGB 32
    assert y.shape == (4, 3, 32, 32) and y.dtype == torch.uint8
    assert torch.equal(y, resize_crop(x.expand(-1, 3, -1, -1), (32, 32), 32, "bilinear"))


def test_unrecorded_note_names_only_real_choices() -> None:
    """Arrays read at their stored size: their size, interpolation and crop mode are no choice, whoever says them."""
    release = PreprocessLayer(image_size=(32, 32), origin="dataset", source="CIFAR-100-C")
    got = resolve_preprocess([PreprocessLayer(origin="flags"), release, IMAGENET], 3)
    note = unrecorded_note("m.pt", got, as_stored=True)
    assert note == (
        "m.pt has no recorded preprocessing: mean 0.4850,0.4560,0.4060, std 0.2290,0.2240,0.2250 from ImageNet's "
        "defaults (torchvision's evaluation) (pass --mean/--std to change)"
    )
    # A resize asked for: the crop, interpolation and crop mode are choices again.
    resized = resolve_preprocess([parse_flags(resize=40, mean="none"), release, TIMM, IMAGENET], 3)
    assert unrecorded_note("m.pt", resized, as_stored=True) == (
        "m.pt has no recorded preprocessing: crop 32x32 from CIFAR-100-C; interpolation bicubic, crop mode squash "
        "from timm's config of m (pass --image-size/--interpolation/--crop-mode to change)"
    )
    assert unrecorded_note("m.pt", resolve_preprocess([parse_flags(mean="none"), DATASET], 3), as_stored=True) is None
