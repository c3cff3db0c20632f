"""lncli.config: defaults < YAML < --set precedence, one-line errors, round trips, sample configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lncli.config import (
    TrainConfig,
    config_to_dict,
    dump_yaml,
    load_train_config,
    parse_override,
    train_config_from_dict,
)
from lncli.errors import ConfigError, LncliError

SAMPLES = Path(__file__).resolve().parents[1] / "sample_configs"
EVALUATE_SAMPLES = {"ci_robustness.yaml"}  # `lncli evaluate --config` files (tests/test_examples_ci.py), not recipes


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_are_valid_and_frozen() -> None:
    cfg = load_train_config(None)
    assert cfg == train_config_from_dict({})
    assert cfg.norm.kind == "batchnorm" and cfg.optim.name == "sgd"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]


def test_precedence_defaults_yaml_set(tmp_path: Path) -> None:
    path = _write(tmp_path, "epochs: 7\noptim:\n  lr: 0.02\n  momentum: 0.8\nbatch_size: 64\n")
    cfg = load_train_config(path, ["optim.lr=0.5", "epochs=3"])
    assert cfg.epochs == 3  # --set beats YAML
    assert cfg.optim.lr == 0.5  # --set beats YAML inside a section
    assert cfg.optim.momentum == 0.8  # YAML beats defaults
    assert cfg.batch_size == 64
    assert cfg.optim.nesterov is TrainConfig().optim.nesterov  # untouched default
    # Later --set wins over an earlier one.
    assert load_train_config(path, ["epochs=3", "epochs=4"]).epochs == 4


def test_set_values_are_yaml_parsed() -> None:
    cfg = train_config_from_dict(
        {},
        [
            "schedule.name=step",
            "schedule.milestones=[3, 6]",
            "optim.nesterov=false",
            "optim.lr=1e-3",  # PyYAML reads this as a string; the config accepts it as a number
            "data.train_limit=null",
            "model.kwargs.width=8",
            "model.kwargs={depth: 2}",
        ],
    )
    assert cfg.schedule.milestones == (3, 6)
    assert cfg.optim.nesterov is False
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.data.train_limit is None
    assert cfg.model.kwargs == {"depth": 2}  # the later, whole-mapping override wins


def test_mapping_overrides_and_aliases() -> None:
    cfg = train_config_from_dict({"norm": {"kind": "LN", "group_size": 4}}, {"batch_size": 32, "amp": "bfloat16"})
    assert cfg.norm.kind == "localnorm"
    assert cfg.amp == "bf16"
    # num_heads defaults to batch / G, the paper's choice.
    assert cfg.norm.num_heads == 8


def test_round_trip_through_dict_and_yaml(tmp_path: Path) -> None:
    cfg = train_config_from_dict(
        {"norm": {"kind": "localnorm", "group_size": 8, "num_heads": 2}, "batch_size": 64},
        ["schedule.name=step", "schedule.milestones=[2,4]", "model.kwargs.width=4", "optim.betas=[0.8, 0.9]"],
    )
    d = config_to_dict(cfg)
    assert d["schedule"]["milestones"] == [2, 4] and isinstance(d["optim"]["betas"], list)
    assert train_config_from_dict(d) == cfg
    assert load_train_config(_write(tmp_path, dump_yaml(cfg))) == cfg


@pytest.mark.parametrize(
    ("raw", "overrides", "must_mention"),
    [
        ({"epochz": 3}, [], ["'epochz'", "did you mean 'epochs'", "valid keys"]),
        ({"optim": {"nesterv": True}}, [], ["'optim.nesterv'", "optim.nesterov"]),
        ({}, ["optim.lrr=0.1"], ["'optim.lrr'"]),
        ({"norm": {"kind": "weightnorm"}}, [], ["'norm.kind'", "batchnorm", "localnorm", "groupnorm"]),
        ({"optim": {"name": "adam"}}, [], ["'optim.name'", "sgd", "adamw"]),
        ({"schedule": {"name": "linear"}}, [], ["'schedule.name'", "cosine", "step", "onecycle"]),
        ({"amp": "fp8"}, [], ["'amp'", "bf16", "fp16"]),
        ({"device": "tpu"}, [], ["'device'", "auto", "cpu", "cuda"]),
        ({"batch_size": "many"}, [], ["'batch_size'", "integer"]),
        ({"epochs": 2.5}, [], ["'epochs'", "integer"]),
        ({"epochs": 0}, [], ["'epochs'", ">= 1"]),
        ({"optim": {"lr": -0.1}}, [], ["'optim.lr'", "> 0"]),
        ({"optim": {"lr": "fast"}}, [], ["'optim.lr'", "number"]),
        ({"optim": {"nesterov": "maybe"}}, [], ["'optim.nesterov'", "true or false"]),
        ({"optim": 3}, [], ["'optim'", "mapping"]),
        ({"label_smoothing": 1.0}, [], ["'label_smoothing'"]),
        ({"norm": {"kind": "localnorm", "group_size": 5}}, [], ["'norm.group_size'", "multiple"]),
        ({"schedule": {"name": "step"}}, [], ["'schedule.milestones'", "step_every"]),
        ({"schedule": {"warmup_epochs": 20}}, [], ["'schedule.warmup_epochs'"]),
        ({"schedule": {"name": "onecycle", "warmup_epochs": 1}}, [], ["'schedule.warmup_epochs'", "onecycle"]),
        ({"model": {"kwargs": {"num_classes": 3}}}, [], ["'model.kwargs.num_classes'"]),
        ({"epochs": {"a": 1}}, [], ["'epochs'"]),
        ({}, ["epochs=3", "novalue"], ["KEY=VALUE"]),
        ({}, ["epochs.sub=3"], ["'epochs'", "integer"]),
        ({"epochs": 3}, ["epochs.sub=3"], ["'epochs.sub'", "not a section"]),
    ],
)
def test_bad_keys_and_values_raise_one_line(raw: dict, overrides: list[str], must_mention: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        train_config_from_dict(raw, overrides)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for part in must_mention:
        assert part in msg, f"{part!r} not in {msg!r}"
    assert isinstance(info.value, LncliError)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(_write(tmp_path, "epochs: [1, 2\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(_write(tmp_path, "- 1\n- 2\n"))
    # An empty file means "all defaults".
    assert load_train_config(_write(tmp_path, "# nothing\n")) == TrainConfig()
    # A binary file (a checkpoint passed by mistake) is one line too, not a UnicodeDecodeError.
    binary = tmp_path / "last.pt"
    binary.write_bytes(b"PK\x03\x04\xda\xff\xfe binary")
    with pytest.raises(ConfigError, match="not a UTF-8 text"):
        load_train_config(binary)


def test_parse_override() -> None:
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("x= [1, 2]") == ("x", [1, 2])
    assert parse_override("s=hello=world") == ("s", "hello=world")
    with pytest.raises(ConfigError):
        parse_override("=3")


@pytest.mark.parametrize(
    "path", sorted(p for p in SAMPLES.glob("*.yaml") if p.name not in EVALUATE_SAMPLES), ids=lambda p: p.name
)
def test_sample_configs_load(path: Path) -> None:
    cfg = load_train_config(path)
    assert yaml.safe_load(path.read_text())  # commented YAML, but not empty
    if cfg.norm.kind == "localnorm":
        assert cfg.batch_size % cfg.norm.group_size == 0


def test_expected_sample_configs_exist() -> None:
    names = {p.name for p in SAMPLES.glob("*.yaml")}
    assert {
        "smoke.yaml",
        "fashion_mnist_bn.yaml",
        "fashion_mnist_localnorm.yaml",
        "fashion_mnist_groupnorm.yaml",
        "cifar10_resnet20_bn.yaml",
        "cifar10_resnet20_localnorm.yaml",
        "cifar10_vgg16_localnorm_paper.yaml",
    } <= names


def test_paper_recipe_matches_authors() -> None:
    cfg = load_train_config(SAMPLES / "cifar10_vgg16_localnorm_paper.yaml")
    assert (cfg.batch_size, cfg.norm.group_size, cfg.norm.num_heads) == (128, 16, 8)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov) == ("sgd", 0.1, 0.9, True)
    assert (cfg.schedule.name, cfg.schedule.step_every, cfg.schedule.gamma) == ("step", 30, 0.75)
    assert (cfg.epochs, cfg.optim.weight_decay) == (250, 5e-4)
    assert cfg.model.arch == "vgg16_paper"


def test_norm_section_is_written_whole_and_rejects_a_null_group_size() -> None:
    # config.yaml (and the config recorded in checkpoints) keeps every norm key, even for batchnorm;
    # only a checkpoint's own `norm` record drops LocalNorm settings (tests/test_checkpoint.py).
    from lncli.config.common import DEFAULT_GROUP_SIZE

    norm = config_to_dict(TrainConfig())["norm"]
    assert norm == {
        "kind": "batchnorm",
        "group_size": DEFAULT_GROUP_SIZE,
        "num_heads": None,
        "grouping": "consecutive",
        "groups": None,
    }
    with pytest.raises(ConfigError, match="'norm.group_size'.*integer"):
        train_config_from_dict({"norm": {"kind": "localnorm", "group_size": None}})
