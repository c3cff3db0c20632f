"""Tests for lncli.jobs.evaluate.checkpoints: CKPT arguments resolved (files, folders, globs) and loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from lncli.errors import CheckpointError, LncliError
from lncli.jobs.evaluate import CHECKPOINT_SUFFIXES, load_checkpoints, natural_key, resolve_checkpoint_paths


def test_resolve_paths_files_dirs_globs(tmp_path: Path) -> None:
    for name in ("ep10.pt", "ep2.pt", "ep1.pth", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in resolve_checkpoint_paths([tmp_path])] == ["ep1.pth", "ep2.pt", "ep10.pt"]
    assert [p.name for p in resolve_checkpoint_paths([str(tmp_path / "ep*.pt")])] == ["ep2.pt", "ep10.pt"]
    # explicit file + overlapping glob: kept once, argument order
    got = resolve_checkpoint_paths([tmp_path / "ep10.pt", str(tmp_path / "*.pt")])
    assert [p.name for p in got] == ["ep10.pt", "ep2.pt"]
    with pytest.raises(LncliError, match="not found"):
        resolve_checkpoint_paths([tmp_path / "missing.pt"])
    with pytest.raises(LncliError, match="no checkpoint matches"):
        resolve_checkpoint_paths([str(tmp_path / "*.ckpt")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LncliError, match="holds no checkpoint"):
        resolve_checkpoint_paths([empty])


def test_load_rejects_non_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "junk.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(LncliError):
        load_checkpoints([bad])


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["ep10.pt", "EP2.pt", "ep1.pt", "ep2b.pt", "ep100.pt"]
    assert sorted(names, key=natural_key) == ["ep1.pt", "EP2.pt", "ep2b.pt", "ep10.pt", "ep100.pt"]


def test_every_suffix_is_picked_up_from_a_folder(tmp_path: Path) -> None:
    for i, suffix in enumerate(CHECKPOINT_SUFFIXES):
        (tmp_path / f"m{i}{suffix}").write_bytes(b"x")
    (tmp_path / "m9.txt").write_bytes(b"x")
    assert [p.suffix for p in resolve_checkpoint_paths([tmp_path])] == list(CHECKPOINT_SUFFIXES)


def test_loaded_checkpoints_carry_path_and_full_digest(eval_ckpts: dict[str, Path]) -> None:
    import hashlib

    (loaded,) = load_checkpoints([eval_ckpts["bn"]])
    assert loaded.path == str(eval_ckpts["bn"])
    assert loaded.sha256 == hashlib.sha256(eval_ckpts["bn"].read_bytes()).hexdigest()
    assert loaded.checkpoint.arch == "tiny" and loaded.checkpoint.norm.kind == "batchnorm"


def test_an_unreadable_torch_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)  # a valid torch file that is not a checkpoint
    with pytest.raises(CheckpointError):
        load_checkpoints([path])
