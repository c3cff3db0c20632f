"""lncli.config.train.parse_arch: the one grammar of --arch and model.arch (torch-free, nothing imported)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lncli.config.train import ArchSpec, parse_arch, train_config_from_dict
from lncli.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("resnet20", ArchSpec("registry", "resnet20")),
        (" tiny ", ArchSpec("registry", "tiny")),
        ("torchvision:resnet18", ArchSpec("torchvision", "resnet18")),
        ("timm:resnet18.a1_in1k", ArchSpec("timm", "resnet18.a1_in1k")),
        ("timm:vit_tiny_patch16_224", ArchSpec("timm", "vit_tiny_patch16_224")),
        ("mypkg.nets:build", ArchSpec("code", "build", "mypkg.nets")),
        ("os:system", ArchSpec("code", "system", "os")),
        ("mypkg:Factory.build", ArchSpec("code", "Factory.build", "mypkg")),
    ],
)
def test_forms(text: str, spec: ArchSpec) -> None:
    assert parse_arch(text) == spec
    assert parse_arch(text).runs_code == (spec.kind == "code")


@pytest.mark.parametrize(
    "text",
    ["", "   ", "timm:", "timm:hf-hub:org/model", "timm:../x", "torchvision:a/b", "a:b:c", "1pkg:f", "pkg:", ":f"],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_arch(text)
    assert "\n" not in str(info.value)


def test_train_config_checks_the_grammar_and_keeps_every_form() -> None:
    for arch in ("timm:resnet18", "torchvision:resnet18", "mypkg.nets:build"):
        assert train_config_from_dict({"model": {"arch": arch}}).model.arch == arch
    with pytest.raises(ConfigError, match="config key 'model.arch': bad arch 'a:b:c'"):
        train_config_from_dict({"model": {"arch": "a:b:c"}})


def test_parsing_imports_nothing() -> None:
    # The grammar is read by the torch-free config layer: parsing a code arch must not import it.
    code = (
        "import sys; from lncli.config.train import parse_arch; parse_arch('lnclitest_absent.mod:f'); "
        "parse_arch('timm:resnet18'); assert 'lnclitest_absent' not in sys.modules; "
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
