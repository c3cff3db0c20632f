"""Tests for lncli.jobs.evaluate.testset: picking the test set, the match check, and the ranges of --rescale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_helpers import cfg, fmnist_ckpt

from lncli.data import DATASETS
from lncli.errors import DataError, LncliError
from lncli.jobs.evaluate import EvalData, evaluate_grid, image_range, load_checkpoints, load_train_range, resolve_data


def test_resolve_data_default_and_mismatch(eval_ckpts: dict[str, Path], tmp_path: Path) -> None:
    models = load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]])
    d = resolve_data(None, models, limit=10)
    assert d.name == "synthetic" and d.synthetic and d.clean is not None and len(d.clean) == 10
    with pytest.raises(DataError, match="channels 1 in the data, 3 in the model"):
        resolve_data("synthetic-gray", models, limit=10)  # arrays are what they are (files follow the model)
    with pytest.raises(DataError, match="takes 3-channel images"):
        resolve_data("synthetic", models, limit=10, channels=1)
    # checkpoints that disagree on their dataset need --data
    other = load_checkpoints([eval_ckpts["bn"]])[0]
    gray_meta = DATASETS["synthetic-gray"]
    fake = dataclasses.replace(other, checkpoint=dataclasses.replace(other.checkpoint, data=gray_meta))
    with pytest.raises(LncliError, match="different datasets"):
        resolve_data(None, [models[0], fake], limit=10)


def test_resolve_data_refuses_a_bad_limit_and_a_bare_imagefolder(eval_ckpts: dict[str, Path]) -> None:
    models = load_checkpoints([eval_ckpts["bn"]])
    with pytest.raises(LncliError, match="--limit must be >= 1"):
        resolve_data("synthetic", models, limit=0)
    with pytest.raises(LncliError, match="imagefolder:PATH"):
        resolve_data("imagefolder", models)


def test_eval_data_holds_exactly_one_kind(eval_data: EvalData, tmp_path: Path) -> None:
    from lncli.data.imagefolder import FolderListing

    assert (eval_data.kind, eval_data.files) == ("dataset", None)
    release = EvalData(name="cifar10-c", synthetic=False, clean=None, cifar10c_dir=tmp_path)
    assert (release.kind, release.files) == ("cifar10c", tmp_path)
    empty = FolderListing(tmp_path, ("a",), (), ())  # no file: falsy, still the folder kind
    folder = EvalData(name="imagefolder", synthetic=False, clean=None, folder=empty)
    assert folder.kind == "imagefolder" and folder.files is empty
    with pytest.raises(LncliError, match="one kind of data, not cifar10c_dir and folder"):
        EvalData(name="x", synthetic=False, clean=None, cifar10c_dir=tmp_path, folder=empty)
    with pytest.raises(LncliError, match="no test images"):
        EvalData(name="x", synthetic=False, clean=None)


def test_train_range_must_match_the_channels(eval_data: EvalData) -> None:
    assert eval_data.clean is not None
    with pytest.raises(LncliError, match="train_range"):
        EvalData.from_imageset(eval_data.clean, train_range=(torch.zeros(1), torch.ones(1)))  # 3-channel test set
    with pytest.raises(LncliError, match="train_range"):
        EvalData.from_imageset(eval_data.clean, train_range=(torch.zeros(3), torch.ones(2)))


def test_image_range_streams_the_whole_set() -> None:
    for seed in range(3):
        x = torch.randint(3, 250, (37, 2, 5, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
        lo, hi = image_range(x.split(8))
        arr = x.numpy().astype(np.float64) / 255.0
        torch.testing.assert_close(lo.double(), torch.from_numpy(arr.min(axis=(0, 2, 3))), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(hi.double(), torch.from_numpy(arr.max(axis=(0, 2, 3))), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="at least one batch"):
        image_range([])


def test_resolve_data_reads_the_training_range_and_falls_back_to_the_test_set(fmnist_dir: Path, tmp_path: Path) -> None:
    models = load_checkpoints([fmnist_ckpt(tmp_path / "f.pt")])
    plain = resolve_data("fashion-mnist", models, data_dir=fmnist_dir)
    assert plain.train_range is None  # only read when asked for (it costs a pass over the training split)
    data = resolve_data("fashion-mnist", models, data_dir=fmnist_dir, with_train_range=True)
    assert data.train_range is not None
    assert [t.tolist() for t in data.train_range] == [
        [pytest.approx(10 / 255, rel=1e-6)],
        [pytest.approx(200 / 255, rel=1e-6)],
    ]
    config = cfg(profile="paper", noises=("gaussian",), severities=(0, 4), modes=("running",), rescale=True)
    assert [r.rescale_range for r in evaluate_grid(models, data, config)] == [None, "train"]
    for f in fmnist_dir.glob("train-*"):
        f.unlink()
    data = resolve_data("fashion-mnist", models, data_dir=fmnist_dir, with_train_range=True)
    assert data.train_range is None and data.clean is not None and len(data.clean) == 40
    assert [r.rescale_range for r in evaluate_grid(models, data, config)] == [None, "test"]


def test_no_training_range_for_image_folders_or_other_channel_counts(fmnist_dir: Path) -> None:
    gray = DATASETS["fashion-mnist"]
    assert load_train_range("imagefolder:/nowhere", gray) is None  # never decoded only for a range
    rgb = dataclasses.replace(gray, in_channels=3)
    assert load_train_range("fashion-mnist", rgb, data_dir=fmnist_dir) is None  # 1-channel training split
    lo, hi = load_train_range("fashion-mnist", gray, data_dir=fmnist_dir) or (None, None)
    assert lo is not None and hi is not None
    assert (lo.item(), hi.item()) == (pytest.approx(10 / 255), pytest.approx(200 / 255))
