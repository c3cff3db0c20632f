"""``lncli evaluate``'s choices made without a flag, each said in one ``note:`` line (and kept in the JSON's config
block), and the preprocessing flags that change how the data is read: ``--channels``, ``--crop-mode``, ``--resize``.

The shipped Fashion-MNIST BatchNorm ``small_cnn`` (and its bare state_dict, a foreign checkpoint) on
small synthetic or generated data, through Typer's CliRunner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lncli.checkpoint import load_checkpoint
from lncli.cli import app
from lncli.data import dataset_meta, load_dataset, normalize
from lncli.data.imagefolder import list_image_folder, stratified_subset, subset_note
from lncli.images import convert_channels
from lncli.models import create_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "checkpoints" / "fashion_mnist_small_cnn_bn.pt"
FAST = ("--batch-size", "16", "--noise", "gaussian", "--device", "cpu")
runner = CliRunner()


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, ["evaluate", *map(str, args)], env={"COLUMNS": "200", "TERM": "dumb"})


def notes_of(res: Any) -> list[str]:
    assert res.exit_code == 0, res.output
    return [line.removeprefix("note: ") for line in res.stderr.splitlines() if line.startswith("note: ")]


def run_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture()
def foreign(tmp_path: Path) -> Path:
    """The shipped model's bare state_dict: a checkpoint that records no preprocessing."""
    torch.save(load_checkpoint(SHIPPED).state_dict, tmp_path / "foreign.pt")
    return tmp_path / "foreign.pt"


# --------------------------------------------------------------------------- the notes


def test_a_foreign_checkpoint_is_told_which_mean_and_std_it_got(foreign: Path, tmp_path: Path) -> None:
    args = (foreign, "--arch", "small_cnn", "--data", "synthetic-gray", "--limit", "16", "--severity", "0", *FAST)
    res = invoke(*args, "--json", tmp_path / "r.json")
    want = "foreign.pt has no recorded preprocessing: mean 0.4962, std 0.3032 from synthetic-gray (pass --mean/--std to change)"
    assert notes_of(res) == [want]
    assert run_json(tmp_path / "r.json")["config"]["notes"] == [want]
    # Said by the flags: nothing to note; half said: the other half is noted.
    assert notes_of(invoke(*args, "--mean", "0.5", "--std", "0.5")) == []
    half = notes_of(invoke(*args, "--mean", "0.5"))
    assert half == ["foreign.pt has no recorded preprocessing: std 0.3032 from synthetic-gray (pass --std to change)"]
    # An lncli checkpoint records its own: no note.
    assert notes_of(invoke(SHIPPED, "--data", "synthetic-gray", "--limit", "16", "--severity", "0", *FAST)) == []


def test_a_foreign_checkpoint_on_image_files_is_told_the_whole_preprocessing(foreign: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "imgs", [2] * 10)
    res = invoke(foreign, "--arch", "small_cnn", "--data", f"imagefolder:{folder}", "--severity", "0", *FAST)
    (note,) = notes_of(res)
    assert note == (
        "foreign.pt has no recorded preprocessing: crop 224x224, resize 256, interpolation bilinear, crop mode "
        "center, mean 0.4590, std 0.2256 from ImageNet's defaults (torchvision's evaluation) "
        "(pass --image-size/--resize/--interpolation/--crop-mode/--mean/--std to change)"
    )


def test_a_release_without_its_clean_set_says_severity_0_has_no_row(tmp_path: Path) -> None:
    rel = tmp_path / "rel"
    rel.mkdir()
    rng = np.random.default_rng(0)
    np.save(rel / "labels.npy", np.tile(rng.integers(0, 10, 20), 5))  # not Fashion-MNIST's test order: no clean set
    np.save(rel / "gaussian_noise.npy", rng.integers(0, 256, (5 * 20, 28, 28, 1), dtype=np.uint8))
    res = invoke(SHIPPED, "--data", f"cifar10c:{rel}", "--severity", "0,1", *FAST, "--json", tmp_path / "r.json")
    want = (
        f"cifar10c {rel}: no installed clean test set matches the release (its first 20 test images, in order), "
        "so severity 0 has no row"
    )
    assert notes_of(res) == [want]
    records = run_json(tmp_path / "r.json")["records"]
    assert {r["severity"] for r in records} == {1}  # the row the note speaks of is really missing
    assert notes_of(invoke(SHIPPED, "--data", f"cifar10c:{rel}", "--severity", "1", *FAST)) == []  # 0 not asked


def _folder(root: Path, sizes: list[int]) -> Path:
    """``root/c<k>/<i>.png``: ``sizes[k]`` grey 30x20 images in class k."""
    rng = np.random.default_rng(1)
    for k, n in enumerate(sizes):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (30, 20), dtype=np.uint8)).save(root / f"c{k}" / f"{i}.png")
    return root


def test_limit_on_a_folder_says_what_each_class_kept(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "imgs", [5] * 9 + [15])
    res = invoke(SHIPPED, "--data", f"imagefolder:{folder}", "--limit", "12", "--severity", "0", *FAST)
    counts = np.bincount(
        np.asarray(list_image_folder(folder).targets)[stratified_subset(list_image_folder(folder).targets, 12)]
    )
    detail = ", ".join(f"c{k} {n}" for k, n in enumerate(counts))
    assert notes_of(res) == [f"--limit 12 kept 12 of 60 images, stratified by class: {detail}"]
    assert counts.tolist() == [1] * 9 + [3]  # the big class keeps its share
    assert notes_of(invoke(SHIPPED, "--data", f"imagefolder:{folder}", "--limit", "60", "--severity", "0", *FAST)) == []


def test_subset_note_is_compact_for_many_classes(tmp_path: Path) -> None:
    listing = list_image_folder(_folder(tmp_path / "many", [2] * 11 + [40]))
    kept = listing.subset(stratified_subset(listing.targets, 8))
    counts = np.bincount(np.asarray(kept.targets), minlength=12)
    assert counts.max() > counts.min() and (counts == 0).any()  # uneven, and some classes kept none
    note = subset_note(kept, len(listing), 8)
    assert note == (
        f"--limit 8 kept 8 of 62 images, stratified by class: {counts.min()}-{counts.max()} per class over 12 classes "
        f"({(counts == 0).sum()} kept none)"
    )
    even = listing.subset(stratified_subset(listing.targets, 62))
    assert subset_note(even, 62, 62).endswith(": 2-40 per class over 12 classes")


# --------------------------------------------------------------------------- how the data is read


@pytest.mark.parametrize(("stored", "model"), [("synthetic-gray", 3), ("synthetic", 1)])
def test_channels_reads_the_data_as_a_foreign_model_takes_it(tmp_path: Path, stored: str, model: int) -> None:
    """A 3-channel model on 1-channel data and the reverse: refused with a --channels hint, then read converted."""
    torch.manual_seed(0)
    net = create_model("tiny", num_classes=10, in_channels=model)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    args = (tmp_path / "m.pt", "--arch", "tiny", "--data", stored, "--limit", "32", "--severity", "0", *FAST)
    refused = invoke(*args)
    assert refused.exit_code == 2 and f"(--channels {model} reads the data as {model}-channel images)" in refused.stderr
    res = invoke(*args, "--channels", model, "--mode", "running", "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    (rec,) = run_json(tmp_path / "r.json")["records"]
    data, meta = load_dataset(stored, "test", limit=32), dataset_meta(stored, channels=model)
    x = normalize(convert_channels(data.images, model), meta)  # (32, model, H, W): L copied, or RGB's luma
    net.load_state_dict(torch.load(tmp_path / "m.pt"))
    with torch.no_grad():
        correct = int((net.eval()(x).argmax(1) == data.labels).sum())
    assert (rec["channels"], rec["n"], rec["correct"]) == (model, 32, correct)


def test_crop_mode_is_a_flag_that_changes_the_reading_and_is_recorded(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "imgs", [2] * 10)  # 30x20 images: the three modes read different pixels
    base = (SHIPPED, "--data", f"imagefolder:{folder}", "--severity", "0", "--mode", "running", *FAST)
    for mode in ("center", "squash", "border", None):
        res = invoke(*base, *(("--crop-mode", mode) if mode else ()), "--json", tmp_path / f"{mode}.json")
        assert res.exit_code == 0, res.output
        (rec,) = run_json(tmp_path / f"{mode}.json")["records"]
        assert rec["crop_mode"] == (mode or "center") and rec["image_size"] == "28x28"  # default: the checkpoint's
    from lncli.config.evaluate import EvalConfig
    from lncli.jobs.evaluate import load_checkpoints, preprocess_flags, resolve_data
    from lncli.jobs.evaluate.loaders import ImageFiles

    models = load_checkpoints([SHIPPED])
    read = {}
    for mode in ("center", "squash", "border"):
        data = resolve_data(f"imagefolder:{folder}", models, preprocess=preprocess_flags(EvalConfig(crop_mode=mode)))
        assert data.input_meta is not None and data.input_meta.crop_mode == mode
        read[mode] = ImageFiles(data.folder.files if data.folder else (), data.input_meta).read(torch.arange(3))
    assert not torch.equal(read["center"], read["squash"]) and not torch.equal(read["center"], read["border"])


def test_a_resize_below_the_crop_pads_it_as_torchvision_does(tmp_path: Path) -> None:
    """Once refused; now torchvision's CenterCrop (and timm's crop_pct above 1): the crop is padded with black."""
    res = invoke(SHIPPED, "--data", "synthetic-gray", "--limit", "16", "--severity", "0", *FAST, "--resize", "20",
                 "--json", tmp_path / "r.json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert {(r["resize"], r["image_size"]) for r in run_json(tmp_path / "r.json")["records"]} == {(20, "28x28")}
