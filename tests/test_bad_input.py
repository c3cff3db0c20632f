"""A table of bad inputs for all four commands: each one is refused before any work.

Every row runs one ``lncli`` command line in a fresh workspace (the current folder
during the call) and must end with exit code 2, exactly one line on stderr that
starts with ``error:`` and names the problem, nothing on stdout, no traceback, and
the workspace byte-identical afterwards (nothing written, no temporary file, no
folder created). Rows run through Typer's CliRunner; a few also as a real
``python -m lncli`` subprocess.

Rows that need ``chmod`` to stop a read or a write are skipped (never passed) when
it does not -- as root, or with CAP_DAC_OVERRIDE; the rows through a plain file
("note.txt/out.csv") still cover the unwritable-parent refusal there.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import lncli.io
from lncli.cli import app
from lncli.errors import OutputError
from lncli.io import atomic_path, atomic_write, check_distinct, check_output_dir, check_output_file, image_suffixes

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "checkpoints"

# A train config that works (1 epoch of the tiny model on 64 synthetic images): rows change one thing.
GOOD_YAML = """\
data: {spec: synthetic-gray, train_limit: 64, test_limit: 32, augment: none}
model: {arch: tiny}
epochs: 1
batch_size: 32
device: cpu
"""


@dataclass(frozen=True)
class Row:
    """One bad command line: its argv (paths relative to the workspace) and a piece of the error line."""

    id: str
    argv: tuple[str, ...]
    needle: str
    needs_chmod: bool = False  # the refusal relies on chmod, which root ignores


EV_OPTS = (
    "--data",
    "synthetic-gray",
    "--limit",
    "32",
    "--batch-size",
    "16",
    "--noise",
    "gaussian",
    "--severity",
    "0,1",
    "--device",
    "cpu",
)


def ev(*extra: str, ckpt: str = "bn.pt") -> tuple[str, ...]:
    """``lncli evaluate`` on the shipped BN checkpoint, 32 synthetic images; later flags win."""
    return ("evaluate", ckpt, *EV_OPTS, *extra)


def fe(*extra: str, ckpt: str = "foreign.pt") -> tuple[str, ...]:
    """``lncli evaluate`` of a foreign state_dict (the shipped small_cnn's, bare): --arch and --data in ``extra``."""
    return ("evaluate", ckpt, *EV_OPTS[2:], *extra)


def fc(*extra: str, src: str = "foreign.pt") -> tuple[str, ...]:
    """``lncli convert`` of the foreign state_dict to LocalNorm: --arch and --data in ``extra``."""
    return ("convert", src, "out.pt", "--to", "localnorm", *extra)


GRAY = ("--data", "synthetic-gray")  # the foreign small_cnn's classes and channels


def cv(*extra: str, src: str = "bn.pt", dst: str = "out.pt") -> tuple[str, ...]:
    """``lncli convert`` of the shipped BN checkpoint to LocalNorm."""
    return ("convert", src, dst, "--to", "localnorm", *extra)


def co(*extra: str, inputs: tuple[str, ...] = ("imgs",)) -> tuple[str, ...]:
    """``lncli corrupt`` of two small PNGs into ./out."""
    return ("corrupt", *inputs, "--noise", "gaussian", "--severity", "1", "--out", "out", *extra)


def tr(*extra: str, config: str = "good.yaml") -> tuple[str, ...]:
    """``lncli train`` of GOOD_YAML into ./run."""
    return ("train", config, "--out", "run", *extra)


ROWS = [
    # --- evaluate: checkpoints ---
    Row("evaluate/ckpt-missing", ev(ckpt="missing.pt"), "not found"),
    Row("evaluate/ckpt-unreadable", ev(ckpt="locked.pt"), "locked.pt", needs_chmod=True),
    Row("evaluate/ckpt-empty", ev(ckpt="empty.pt"), "empty.pt"),
    Row("evaluate/ckpt-junk", ev(ckpt="junk.pt"), "junk.pt"),
    Row("evaluate/ckpt-truncated", ev(ckpt="half.pt"), "truncated"),
    Row("evaluate/ckpt-not-a-model", ev(ckpt="tensor.pt"), "tensor.pt"),
    Row("evaluate/ckpt-yaml", ev(ckpt="good.yaml"), "good.yaml"),
    Row("evaluate/ckpt-folder-without-ckpt", ev(ckpt="folder"), "holds no checkpoint"),
    # --- evaluate: outputs ---
    Row("evaluate/csv-is-folder", ev("--csv", "folder"), "--csv folder is a folder"),
    Row("evaluate/csv-suffix", ev("--csv", "r.txt"), "--csv r.txt"),
    Row("evaluate/json-suffix", ev("--json", "r.csv"), "--json r.csv"),
    Row("evaluate/plot-suffix", ev("--plot", "r.txt"), "--plot r.txt"),
    Row("evaluate/plot-no-suffix", ev("--plot", "plots"), "no suffix"),
    Row("evaluate/plot-is-folder", ev("--plot", "folder"), "is a folder"),
    Row("evaluate/csv-through-file", ev("--csv", "note.txt/r.csv"), "note.txt is a file"),
    Row("evaluate/json-folder-not-writable", ev("--json", "ro/r.json"), "cannot write into ro", needs_chmod=True),
    Row("evaluate/csv-read-only", ev("--csv", "ro.csv"), "read-only", needs_chmod=True),
    # --- evaluate: numbers and names ---
    Row("evaluate/severity-9", ev("--severity", "9"), "severity"),
    Row("evaluate/severity-garbage", ev("--severity", "1-x"), "--severity"),
    Row("evaluate/batch-size-0", ev("--batch-size", "0"), "--batch-size"),
    Row("evaluate/group-size-0", ev("--group-size", "0"), "--group-size"),
    Row("evaluate/batch-size-list-0", ev("--batch-size", "0,16"), "--batch-size must be >= 1, got 0"),
    Row("evaluate/batch-size-list-garbage", ev("--batch-size", "16,x"), "--batch-size '16,x'"),
    Row("evaluate/prior-n-negative", ev("--mode", "prior", "--prior-n", "-1"), "--prior-n"),
    Row("evaluate/prior-n-inf", ev("--prior-n", "inf"), "--prior-n"),
    Row("evaluate/tent-lr-0", ev("--mode", "tent", "--tent-lr", "0"), "--tent-lr"),
    Row("evaluate/tent-steps-0", ev("--tent-steps", "0"), "--tent-steps"),
    Row("evaluate/order-unknown", ev("--order", "bogus"), "'bogus' is not one of"),
    Row("evaluate/limit-0", ev("--limit", "0"), "--limit"),
    Row("evaluate/limit-negative", ev("--limit", "-5"), "--limit"),
    Row("evaluate/limit-not-a-number", ev("--limit", "x"), "--limit"),
    Row("evaluate/workers--1", ev("--workers", "-1"), "--workers"),
    Row("evaluate/max-drop-2", ev("--max-drop", "2"), "--max-drop"),
    Row("evaluate/fail-under-garbage", ev("--fail-under", "gaussian:x=1"), "--fail-under"),
    Row(
        "evaluate/fail-under-90",
        ev("--fail-under", "90"),
        "bare number must be a fraction in [0, 1], got 90; a percentage needs % (90%)",
    ),
    Row("evaluate/fail-under-150-percent", ev("--fail-under", "clean=150%"), "a percentage must be in 0%-100%"),
    Row("evaluate/baseline-unknown", ev("--baseline", "zzz", "--csv", "r.csv"), "--baseline"),
    Row("evaluate/noise-unknown", ev("--noise", "fog_x"), "unknown noise"),
    Row(
        "evaluate/noise-close",
        ev("--noise", "gausian"),
        "unknown noise 'gausian' for profile 'imagenet-c' (did you mean 'gaussian'",
    ),
    Row("evaluate/mode-unknown", ev("--mode", "bogus"), "unknown mode"),
    Row("evaluate/mode-close", ev("--mode", "runing"), "unknown mode 'runing' (did you mean 'running'?)"),
    Row("evaluate/profile-unknown", ev("--profile", "nope"), "'nope' is not one of"),
    Row("evaluate/heads-unknown", ev("--heads", "nope"), "'nope' is not one of"),
    Row("evaluate/device-unknown", ev("--device", "tpu"), "'tpu' is not one of"),
    Row("evaluate/dataset-unknown", ev("--data", "nope"), "unknown dataset"),
    Row("evaluate/dataset-mismatch", ev("--data", "synthetic"), "does not match"),
    Row("evaluate/idx-damaged", ev("--data", "fashion-mnist", "--data-dir", "fm"), "bad magic"),
    Row("evaluate/imagefolder-missing", ev("--data", "imagefolder:nowhere"), "nowhere"),
    Row("evaluate/imagefolder-empty", ev("--data", "imagefolder:folder"), "folder"),
    Row("evaluate/imagefolder-damaged-image", ev("--data", "imagefolder:tree"), "cannot read image"),
    Row("evaluate/cifar10c-empty-folder", ev("--data", "cifar10c:folder"), "labels.npy"),
    Row("evaluate/cifar10c-damaged", ev("--data", "cifar10c:c10c"), "labels.npy"),
    # --- evaluate: foreign checkpoints and --arch ---
    Row("evaluate/arch-timm-unknown", fe("--arch", "timm:resnet19", *GRAY), "unknown timm model 'resnet19'; close"),
    Row("evaluate/arch-torchvision-unknown", fe("--arch", "torchvision:resnt18", *GRAY), "close matches: resnet18"),
    Row("evaluate/arch-bad-form", fe("--arch", "a:b:c", *GRAY), "bad arch 'a:b:c'"),
    Row("evaluate/arch-classes-mismatch", fe("--arch", "small_cnn", *GRAY, ckpt="foreign7.pt"), "has 7 classes"),
    Row("evaluate/arch-channels-mismatch", fe("--arch", "small_cnn", "--data", "synthetic"), "takes 1 channels"),
    Row(
        "evaluate/arch-channels-hint",
        fe("--arch", "small_cnn", "--data", "synthetic"),
        "(--channels 1 reads the data as 1-channel images)",
    ),
    Row("evaluate/arch-wrong-model", fe("--arch", "tiny", *GRAY), "is --arch right?"),
    Row("evaluate/arch-not-recorded-one", ev("--arch", "resnet20"), "holds a 'small_cnn' model"),
    Row("evaluate/foreign-without-arch", fe(*GRAY), "records no architecture or data; pass --arch NAME"),
    Row("evaluate/foreign-without-data", fe("--arch", "small_cnn"), "records no architecture or data; pass --data"),
    Row("evaluate/foreign-dataset-unknown", fe("--arch", "small_cnn", "--data", "nope"), "unknown dataset"),
    Row("evaluate/arch-code-no-module", fe("--arch", "lnclitest_nowhere.nets:build", *GRAY), "cannot import module"),
    Row("evaluate/arch-code-no-function", fe("--arch", "lnclitest_badin:nope", *GRAY), "has no 'nope'"),
    Row("evaluate/arch-code-not-callable", fe("--arch", "lnclitest_badin:NOT_CALLABLE", *GRAY), "not a function"),
    Row("evaluate/ckpt-records-code", ev(ckpt="evil.pt"), "never runs code named by a file"),
    # --- evaluate: CI check (--config, --junit, --markdown, --compare) ---
    Row("evaluate/config-missing", ev("--config", "missing.yaml"), "missing.yaml"),
    Row("evaluate/config-unknown-key", ev("--config", "evalkey.yaml"), "unknown config key 'nosie'"),
    Row("evaluate/config-bad-value", ev("--config", "evalval.yaml"), "config key 'workers'"),
    Row("evaluate/config-not-yaml", ev("--config", "bad.yaml"), "not valid YAML"),
    Row(
        "evaluate/junit-suffix",
        ev("--junit", "r.txt"),
        "--junit r.txt: cannot write 'txt' files; the suffix must be .xml",
    ),
    Row("evaluate/junit-no-suffix", ev("--junit", "report"), "--junit report has no suffix; it must end in .xml"),
    Row(
        "evaluate/markdown-suffix", ev("--markdown", "summary.csv"), "must be one of .md, .markdown (or have no suffix)"
    ),
    Row("evaluate/markdown-is-folder", ev("--markdown", "folder"), "--markdown folder is a folder"),
    Row("evaluate/compare-missing", ev("--compare", "missing.json"), "missing.json: no such file"),
    Row("evaluate/compare-other-version", ev("--compare", "v2.json"), "format version 2"),
    Row("evaluate/compare-not-json", ev("--compare", "good.yaml"), "not a JSON file"),
    Row(
        "evaluate/max-regression-negative", ev("--compare", "base.json", "--max-regression", "-0.1"), "--max-regression"
    ),
    Row("evaluate/significance-0", ev("--compare", "base.json", "--significance", "0"), "--significance"),
    Row("evaluate/significance-1", ev("--compare", "base.json", "--significance", "1"), "--significance"),
    Row("evaluate/max-regression-alone", ev("--max-regression", "0.1"), "needs --compare"),
    # --- evaluate: image folders, releases and preprocessing (issue 13) ---
    Row("evaluate/imagefolder-non-image-files", ev("--data", "imagefolder:txts"), "hold no image files"),
    Row("evaluate/imagefolder-one-class", ev("--data", "imagefolder:one"), "classes 1 in the data, 10 in the model"),
    Row("evaluate/imagefolder-flat", ev("--data", "imagefolder:imgs"), "has no class folders"),
    Row("evaluate/cifar10c-no-labels", ev("--data", "cifar10c:nolabels"), "has no labels.npy"),
    Row("evaluate/cifar10c-float-images", ev("--data", "cifar10c:floats"), "expected uint8"),
    Row("evaluate/cifar10c-float-labels", ev("--data", "cifar10c:floatlabels"), "expected integer labels"),
    Row("evaluate/cifar10c-wrong-shape", ev("--data", "cifar10c:shape"), "C 1 or 3"),
    Row("evaluate/cifar10c-bare", ev("--data", "cifar10c:"), "cifar10c needs a path: use cifar10c:DIR"),
    Row("evaluate/imagenetc-empty", ev("--data", "imagenetc:folder"), "no <corruption>/<severity>/ folders"),
    Row("evaluate/mean-garbage", ev("--mean", "0.1,0.2"), "--mean '0.1,0.2' is not 1 or 3"),
    Row("evaluate/std-zero", ev("--std", "0"), "--std must be > 0"),
    Row("evaluate/channels-2", ev("--channels", "2"), "--channels must be 1 or 3"),
    Row("evaluate/channels-not-the-models", ev("--channels", "3"), "takes 1-channel images"),
    Row("evaluate/image-size-0", ev("--image-size", "0"), "--image-size must be >= 1"),
    Row("evaluate/interpolation-unknown", ev("--interpolation", "lanczos"), "'lanczos' is not one of"),
    Row("evaluate/crop-mode-unknown", ev("--crop-mode", "squish"), "'squish' is not one of"),
    Row("evaluate/skip-unreadable-on-arrays", ev("--skip-unreadable"), "--skip-unreadable applies to imagefolder"),
    # --- convert ---
    Row("convert/in-missing", cv(src="missing.pt"), "does not exist"),
    Row("convert/in-folder", cv(src="folder"), "folder"),
    Row("convert/in-unreadable", cv(src="locked.pt"), "locked.pt", needs_chmod=True),
    Row("convert/in-empty", cv(src="empty.pt"), "empty.pt"),
    Row("convert/in-junk", cv(src="junk.pt"), "junk.pt"),
    Row("convert/in-truncated", cv(src="half.pt"), "truncated"),
    Row("convert/in-not-a-model", cv(src="tensor.pt"), "tensor.pt"),
    Row("convert/in-yaml", cv(src="good.yaml"), "good.yaml"),
    Row("convert/out-is-folder", cv(dst="folder"), "OUT folder is a folder"),
    Row("convert/out-suffix", cv(dst="out.txt"), "OUT out.txt"),
    Row("convert/out-through-file", cv(dst="note.txt/out.pt"), "note.txt is a file"),
    Row("convert/out-folder-not-writable", cv(dst="ro/out.pt"), "cannot write into ro", needs_chmod=True),
    Row("convert/out-read-only", cv(dst="ro.pt"), "read-only", needs_chmod=True),
    Row("convert/out-is-in", cv(dst="bn.pt"), "refusing to overwrite"),
    Row("convert/out-is-in-alias", cv(dst="folder/../bn.pt"), "refusing to overwrite"),
    Row("convert/out-is-in-hard-link", cv(dst="bn-link.pt"), "refusing to overwrite"),
    Row("convert/to-unknown", ("convert", "bn.pt", "out.pt", "--to", "groupnorm"), "'groupnorm' is not one of"),
    Row("convert/to-same-norm", ("convert", "bn.pt", "out.pt", "--to", "batchnorm"), "already uses batchnorm"),
    Row("convert/group-size-0", cv("--group-size", "0"), "group_size"),
    Row("convert/heads-0", cv("--heads", "0"), "num_heads"),
    Row("convert/grouping-unknown", cv("--grouping", "zigzag"), "'zigzag' is not one of"),
    Row("convert/finetune-without-data", cv("--finetune", "1"), "--finetune needs --data"),
    Row("convert/finetune-dataset-unknown", cv("--finetune", "1", "--data", "nope"), "unknown dataset"),
    Row("convert/finetune-dataset-mismatch", cv("--finetune", "1", "--data", "synthetic"), "3 channels"),
    Row("convert/finetune-epochs--1", cv("--finetune", "-1", "--data", "synthetic-gray"), "--finetune"),
    Row("convert/arch-timm-unknown", fc("--arch", "timm:resnet19", *GRAY), "unknown timm model 'resnet19'"),
    Row("convert/arch-classes-mismatch", fc("--arch", "small_cnn", *GRAY, src="foreign7.pt"), "has 7 classes"),
    Row("convert/arch-channels-mismatch", fc("--arch", "small_cnn", "--data", "synthetic"), "takes 1 channels"),
    Row("convert/arch-wrong-model", fc("--arch", "tiny", *GRAY), "is --arch right?"),
    Row("convert/foreign-without-arch", fc(*GRAY), "pass --arch NAME"),
    Row("convert/arch-code-no-module", fc("--arch", "lnclitest_nowhere:build", *GRAY), "cannot import module"),
    Row("convert/ckpt-records-code", cv(src="evil.pt"), "never runs code named by a file"),
    # --- corrupt ---
    Row("corrupt/input-missing", co(inputs=("missing.png",)), "missing.png does not exist"),
    Row("corrupt/input-no-images", co(inputs=("folder",)), "no image files"),
    Row("corrupt/image-damaged", co(inputs=("broken",)), "cannot read image"),
    Row("corrupt/image-empty", co(inputs=("emptyimg",)), "cannot read image"),
    Row("corrupt/out-is-file", co("--out", "note.txt"), "is a file, not a folder"),
    Row("corrupt/out-through-file", co("--out", "note.txt/sub"), "note.txt is a file"),
    Row("corrupt/out-not-writable", co("--out", "ro/out"), "cannot write into ro", needs_chmod=True),
    Row("corrupt/preview-is-folder", co("--preview", "folder"), "--preview folder is a folder"),
    Row("corrupt/preview-suffix", co("--preview", "sheet.txt"), "--preview sheet.txt"),
    Row("corrupt/preview-is-out", co("--out", "sheet.png", "--preview", "sheet.png"), "same file"),
    Row("corrupt/preview-is-an-output", co("--preview", "out/gaussian/1/a.png"), "both be written"),
    Row("corrupt/preview-is-an-input", co("--preview", "imgs/a.png", "--overwrite"), "input"),
    Row("corrupt/severity-9", co("--severity", "9"), "severity"),
    Row("corrupt/severity-garbage", co("--severity", "0-x"), "severit"),
    Row("corrupt/noise-unknown", co("--noise", "fog_x"), "unknown noise"),
    Row("corrupt/profile-unknown", co("--profile", "nope"), "'nope' is not one of"),
    Row("corrupt/format-unknown", co("--format", "gif"), "'gif' is not one of"),
    Row("corrupt/jpeg-quality-0", co("--format", "jpeg", "--jpeg-quality", "0"), "--jpeg-quality"),
    Row("corrupt/jpeg-quality-101", co("--format", "jpeg", "--jpeg-quality", "101"), "--jpeg-quality"),
    Row("corrupt/limit-0", co("--limit", "0"), "--limit"),
    Row("corrupt/threads-0", co("--threads", "0"), "--threads"),
    Row("corrupt/npy-needs-all-severities", co("--format", "npy"), "--severity 1-5"),
    Row("corrupt/dataset-unknown", co("--data", "nope", inputs=()), "unknown dataset"),
    Row("corrupt/dataset-and-files", co("--data", "synthetic"), "not both"),
    Row("corrupt/no-input", co(inputs=()), "give either"),
    Row("corrupt/idx-damaged", co("--data", "fashion-mnist", "--data-dir", "fm", inputs=()), "bad magic"),
    Row("corrupt/imagefolder-damaged-image", co("--data", "imagefolder:tree", inputs=()), "cannot read image"),
    # --- train ---
    Row("train/config-missing", tr(config="missing.yaml"), "does not exist"),
    Row("train/config-folder", tr(config="folder"), "folder"),
    Row("train/config-unreadable", tr(config="locked.yaml"), "locked.yaml", needs_chmod=True),
    Row("train/config-damaged-yaml", tr(config="bad.yaml"), "not valid YAML"),
    Row("train/config-not-a-mapping", tr(config="list.yaml"), "mapping"),
    Row("train/config-binary", tr(config="bn.pt"), "not a UTF-8"),
    Row("train/config-unknown-key", tr(config="unknown.yaml"), "epoch"),
    Row("train/set-without-value", tr("--set", "epochs"), "--set"),
    Row("train/epochs-0", tr("--set", "epochs=0"), "epochs"),
    Row("train/batch-size-0", tr("--set", "batch_size=0"), "batch_size"),
    Row("train/train-limit-0", tr("--set", "data.train_limit=0"), "data.train_limit"),
    Row("train/group-size-0", tr("--set", "norm.kind=localnorm", "--set", "norm.group_size=0"), "group_size"),
    Row("train/lr-negative", tr("--set", "optim.lr=-1"), "lr"),
    Row("train/arch-unknown", tr("--set", "model.arch=nope"), "nope"),
    Row("train/arch-bad-form", tr("--set", "model.arch=a:b:c"), "model.arch"),
    Row("train/arch-timm-unknown", tr("--set", "model.arch=timm:resnet19"), "unknown timm model 'resnet19'"),
    Row("train/arch-code-no-module", tr("--set", "model.arch=lnclitest_nowhere:build"), "cannot import module"),
    Row("train/dataset-unknown", tr("--set", "data.spec=nope"), "unknown dataset"),
    Row("train/norm-unknown", tr("--set", "norm.kind=weightnorm"), "norm.kind"),
    Row("train/gn-groups-zero", tr("--set", "norm.kind=gn", "--set", "norm.groups=0"), "norm.groups"),
    Row("train/gn-groups-not-dividing", tr("--set", "norm.kind=gn", "--set", "norm.groups=3"), "norm.groups=3"),
    Row("train/optimizer-unknown", tr("--set", "optim.name=lbfgs"), "optim.name"),
    Row("train/idx-damaged", tr("--set", "data.spec=fashion-mnist", "--set", "data.data_dir=fm"), "bad magic"),
    Row("train/out-is-file", tr("--out", "note.txt"), "is a file, not a folder"),
    Row("train/out-through-file", tr("--out", "note.txt/run"), "note.txt is a file"),
    Row("train/out-not-writable", tr("--out", "ro/run"), "cannot write into ro", needs_chmod=True),
    Row("train/out-holds-a-run", tr("--out", "done"), "already holds a run"),
    Row("train/resume-nothing", tr("--resume"), "--resume"),
    Row("train/out-overwrites-config", tr("--out", "mine", config="mine/config.yaml"), "refusing to overwrite"),
]

# Rows also run as a real `python -m lncli` process (each costs a few seconds of imports):
# the issue's own repro and a click usage error.
SUBPROCESS_ROWS = ("evaluate/csv-is-folder", "evaluate/profile-unknown")
CHMOD_ROWS = tuple(r.id for r in ROWS if r.needs_chmod)
# Capabilities that let root ignore file modes; without them root obeys chmod like anyone.
DAC_CAPS = "-dac_override,-dac_read_search,-fowner"


def _png(path: Path, seed: int) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _idx_damaged(folder: Path) -> None:
    """Fashion-MNIST idx files with a bad magic number, for both splits."""
    folder.mkdir()
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (folder / stem).write_bytes(b"\x00\x00\x09\x03" + bytes(64))


def _foreign_files(ws: Path) -> None:
    """foreign.pt (the shipped small_cnn's bare state_dict), foreign7.pt (7 classes), evil.pt (records os:system)."""
    payload = torch.load(ws / "bn.pt", weights_only=True)
    state = payload["state_dict"]
    torch.save(state, ws / "foreign.pt")
    seven = {
        **state,
        "classifier.3.weight": state["classifier.3.weight"][:7],
        "classifier.3.bias": state["classifier.3.bias"][:7],
    }
    torch.save(seven, ws / "foreign7.pt")
    torch.save({**payload, "arch": "os:system"}, ws / "evil.pt")
    (ws / "lnclitest_badin.py").write_text("NOT_CALLABLE = 3\n")


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace holding every file the rows name; it is the current folder during the test."""
    shutil.copyfile(SHIPPED / "fashion_mnist_small_cnn_bn.pt", tmp_path / "bn.pt")
    os.link(tmp_path / "bn.pt", tmp_path / "bn-link.pt")
    good = (tmp_path / "bn.pt").read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint at all")
    (tmp_path / "half.pt").write_bytes(good[: len(good) // 2])
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    (tmp_path / "note.txt").write_text("a plain file\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "imgs").mkdir()
    _png(tmp_path / "imgs" / "a.png", 0)
    _png(tmp_path / "imgs" / "b.png", 1)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    (tmp_path / "emptyimg").mkdir()
    (tmp_path / "emptyimg" / "e.png").write_bytes(b"")
    _idx_damaged(tmp_path / "fm")
    (tmp_path / "tree" / "cls").mkdir(parents=True)  # an image folder dataset with one damaged image
    (tmp_path / "tree" / "cls" / "bad.png").write_bytes(b"not a png")
    (tmp_path / "txts" / "cls").mkdir(parents=True)  # class folders without images
    (tmp_path / "txts" / "cls" / "readme.txt").write_text("no image here")
    (tmp_path / "one" / "cls").mkdir(parents=True)  # a good folder of one class, for a 10-class model
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "one" / "cls" / "a.png")
    for name, labels, images in (
        ("nolabels", None, np.zeros((10, 8, 8, 1), np.uint8)),
        ("floats", np.zeros(10, np.int64), np.zeros((10, 8, 8, 1), np.float32)),
        ("floatlabels", np.zeros(10, np.float64), np.zeros((10, 8, 8, 1), np.uint8)),
        ("shape", np.zeros(10, np.int64), np.zeros((10, 8, 8, 2), np.uint8)),
    ):  # CIFAR-10-C-style releases with one thing wrong each
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "gaussian_noise.npy", images)
        if labels is not None:
            np.save(tmp_path / name / "labels.npy", labels)
    (tmp_path / "c10c").mkdir()  # CIFAR-10-C folder with damaged arrays
    for name in ("labels.npy", "gaussian_noise.npy"):
        (tmp_path / "c10c" / name).write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "good.yaml").write_text(GOOD_YAML)
    (tmp_path / "bad.yaml").write_text("epochs: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "unknown.yaml").write_text(GOOD_YAML + "epoch: 3\n")
    _foreign_files(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # lnclitest_badin.py, a user's builder module
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # importing it must not write __pycache__ into ws
    (tmp_path / "evalkey.yaml").write_text("nosie: gaussian\n")
    (tmp_path / "evalval.yaml").write_text("workers: many\n")
    eval_json = {"format": "lncli-eval", "format_version": 1, "config": {}, "records": []}
    (tmp_path / "base.json").write_text(json.dumps(eval_json))
    (tmp_path / "v2.json").write_text(json.dumps({**eval_json, "format_version": 2}))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text(GOOD_YAML)
    (tmp_path / "done").mkdir()
    shutil.copyfile(SHIPPED / "fashion_mnist_small_cnn_bn.pt", tmp_path / "done" / "last.pt")
    # chmod rows: an unreadable checkpoint and config, a read-only folder and files.
    for name, body in (("locked.pt", good), ("locked.yaml", GOOD_YAML.encode()), ("ro.csv", b"old\n"), ("ro.pt", good)):
        (tmp_path / name).write_bytes(body)
    (tmp_path / "locked.pt").chmod(0)
    (tmp_path / "locked.yaml").chmod(0)
    (tmp_path / "ro.csv").chmod(0o444)
    (tmp_path / "ro.pt").chmod(0o444)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _chmod_ignored(ws: Path) -> bool:
    """True when chmod does not stop this process (root, CAP_DAC_OVERRIDE): the mode-000 file opens."""
    try:
        with open(ws / "locked.pt", "rb"):
            return True
    except PermissionError:
        return False


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ``root`` with its mode, and for files their bytes (None when unreadable)."""
    snap: dict[str, tuple[object, ...]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if stat.S_ISDIR(st.st_mode):
            snap[str(p.relative_to(root))] = ("dir", st.st_mode)
        else:
            try:
                body: bytes | None = p.read_bytes()
            except PermissionError:
                body = None
            snap[str(p.relative_to(root))] = ("file", st.st_mode, st.st_size, body)
    return snap


def _assert_refused(row: Row, code: int, stdout: str, stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"{row.id}: exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert "Traceback" not in stdout + stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{row.id}: stderr is not one error line:\n{stderr}"
    assert row.needle in lines[0], f"{row.id}: {row.needle!r} not in {lines[0]!r}"
    assert stdout.strip() == "", f"{row.id}: stdout should be empty:\n{stdout}"


def _skip_if_chmod_ignored(row: Row, ws: Path) -> None:
    if row.needs_chmod and _chmod_ignored(ws):
        pytest.skip("chmod does not stop this process (root); test_chmod_rows_as_root_without_dac_caps runs this row")


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused(row: Row, ws: Path) -> None:
    _skip_if_chmod_ignored(row, ws)
    before = _snapshot(ws)
    res = CliRunner().invoke(app, list(row.argv), env={"COLUMNS": "200", "TERM": "dumb"})
    assert res.exception is None or isinstance(res.exception, SystemExit), f"{row.id}: {res.exception!r}"
    _assert_refused(row, res.exit_code, res.stdout, res.stderr)
    assert _snapshot(ws) == before, f"{row.id}: the workspace changed"


@pytest.mark.parametrize("row", [r for r in ROWS if r.id in SUBPROCESS_ROWS], ids=lambda r: r.id)
def test_bad_input_is_refused_by_python_dash_m(row: Row, ws: Path) -> None:
    _skip_if_chmod_ignored(row, ws)
    before = _snapshot(ws)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "200",
        "TERM": "dumb",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "lncli", *row.argv],
        capture_output=True,
        text=True,
        cwd=ws,
        env=env,
        timeout=300,
        check=False,
    )
    _assert_refused(row, proc.returncode, proc.stdout, proc.stderr)
    assert _snapshot(ws) == before, f"{row.id}: the workspace changed"


TIMM_MISSING_ROWS = [
    Row("evaluate/timm-missing", fe("--arch", "timm:resnet18", *GRAY), "pip install 'lncli[timm]'"),
    Row("convert/timm-missing", fc("--arch", "timm:resnet18", *GRAY), "pip install 'lncli[timm]'"),
    Row("train/timm-missing", tr("--set", "model.arch=timm:resnet18"), "pip install 'lncli[timm]'"),
]


@pytest.mark.parametrize("row", TIMM_MISSING_ROWS, ids=[r.id for r in TIMM_MISSING_ROWS])
def test_timm_missing_is_refused(row: Row, ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError, as without the extra
    before = _snapshot(ws)
    res = CliRunner().invoke(app, list(row.argv), env={"COLUMNS": "200", "TERM": "dumb"})
    _assert_refused(row, res.exit_code, res.stdout, res.stderr)
    assert _snapshot(ws) == before, f"{row.id}: the workspace changed"


def test_table_covers_every_command() -> None:
    assert {r.argv[0] for r in ROWS} == {"evaluate", "convert", "corrupt", "train"}
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert set(SUBPROCESS_ROWS) <= {r.id for r in ROWS}


def test_chmod_rows_as_root_without_dac_caps(ws: Path, tmp_path: Path) -> None:
    """As root the chmod rows skip above; run them again in a pytest whose root has lost the DAC capabilities."""
    if not _chmod_ignored(ws):
        pytest.skip("chmod stops this process, so the chmod rows ran in test_bad_input_is_refused")
    setpriv = shutil.which("setpriv")
    if (
        os.geteuid() != 0
        or setpriv is None
        or subprocess.run([setpriv, f"--bounding-set={DAC_CAPS}", "true"], check=False).returncode != 0
    ):
        pytest.skip(
            "chmod is ignored but we cannot drop CAP_DAC_OVERRIDE (not root, no setpriv, or no CAP_SETPCAP): the chmod rows stay unchecked"
        )
    select = " or ".join(f"[{rid}]" for rid in CHMOD_ROWS)
    cmd = [setpriv, f"--bounding-set={DAC_CAPS}", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           f"--basetemp={tmp_path / 'inner'}", str(Path(__file__)), "-k", select]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{len(CHMOD_ROWS)} passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-3000:]


# --------------------------------------------------------------------------- lncli.io: checks and writers


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_output_checks_create_nothing_and_accept_good_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    before = _tree(tmp_path)
    assert (
        check_output_file(tmp_path / "new" / "deeper" / "r.csv", "--csv", (".csv",))
        == tmp_path / "new" / "deeper" / "r.csv"
    )
    check_output_file(tmp_path / "sub" / "R.CSV", "--csv", (".csv",))  # suffixes compare case-insensitively
    check_output_file(tmp_path / "any.thing", "OUT")  # no suffix rule
    check_output_dir(tmp_path / "sub", "--out")
    check_output_dir(tmp_path / "a" / "b", "--out")
    check_distinct(
        {"--csv": tmp_path / "r.csv", "--json": tmp_path / "r.json", "--plot": None}, {"IN": tmp_path / "in.pt"}
    )
    assert _tree(tmp_path) == before


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda d: check_output_file(d / "sub", "--csv", (".csv",)), "--csv"),
        (
            lambda d: check_output_file(d / "r.CSVX", "--csv", (".csv",)),
            "cannot write 'CSVX' files; the suffix must be .csv",
        ),
        (lambda d: check_output_file(d / "plot", "--plot", image_suffixes()), "no suffix; it must end in one of"),
        (
            lambda d: check_output_file(d / "note.txt" / "a" / "r.csv", "--csv", (".csv",)),
            "note.txt is a file, not a folder",
        ),
        (lambda d: check_output_dir(d / "note.txt", "--out"), "is a file, not a folder"),
        (lambda d: check_output_dir(d / "note.txt" / "x", "--out"), "note.txt is a file"),
        (lambda d: check_distinct({"--csv": d / "r.csv", "--json": d / "sub" / ".." / "r.csv"}), "are the same file"),
        (
            lambda d: check_distinct({"OUT": d / "note.txt"}, {"IN": d / "link.txt"}),
            "refusing to overwrite",
        ),  # a hard link
    ],
    ids=[
        "folder",
        "suffix",
        "no-suffix",
        "through-file",
        "dir-is-file",
        "dir-through-file",
        "two-outputs",
        "hard-link",
    ],
)
def test_output_checks_refuse_in_one_line(tmp_path: Path, call, needle: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "note.txt").write_text("x")
    os.link(tmp_path / "note.txt", tmp_path / "link.txt")
    before = _tree(tmp_path)
    with pytest.raises(OutputError) as info:
        call(tmp_path)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert _tree(tmp_path) == before


def test_writer_oserror_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "r.csv"
    with (
        pytest.raises(OutputError, match=r"cannot write .*r\.csv: No space left on device"),
        atomic_write(target) as fh,
    ):
        fh.write("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert _tree(tmp_path) == []  # no temp file, and the folders it made are gone again
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(OutputError, match="dir.csv"), atomic_write(tmp_path / "dir.csv") as fh:  # replace onto a folder
        fh.write("x")
    assert _tree(tmp_path) == ["dir.csv"]
    (tmp_path / "f").write_text("keep")
    with pytest.raises(OutputError, match="cannot write"), atomic_path(tmp_path / "f" / "x.bin"):  # parent is a file
        pass
    assert (tmp_path / "f").read_text() == "keep"


def test_writer_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as fh:
        fh.write("new, half written")
        raise KeyboardInterrupt  # not an OSError: passes through unchanged
    assert target.read_text() == "old" and _tree(tmp_path) == ["r.json"]


def test_cli_write_failure_is_one_line(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up while the results are written: one line, exit 2, no partial file."""

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # Run the same sweep once first: os.replace is patched process-wide, and a first run
    # compiles the numba noise kernels, whose on-disk cache is written with os.replace.
    warm = CliRunner().invoke(app, list(ev()), env={"COLUMNS": "200", "TERM": "dumb"})
    assert warm.exit_code == 0, warm.stderr
    monkeypatch.setattr(lncli.io.os, "replace", full)
    res = CliRunner().invoke(app, list(ev("--csv", "out/r.csv")), env={"COLUMNS": "200", "TERM": "dumb"})
    assert res.exit_code == 2 and res.stderr.strip() == "error: cannot write out/r.csv: No space left on device", (
        res.stderr
    )
    assert not (ws / "out").exists()
