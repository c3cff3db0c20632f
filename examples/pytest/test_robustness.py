"""A robustness test as you would write it in your own pytest suite: ``lncli.evaluate`` on a model object.

Run it with ``pytest examples/pytest``. Here the model is the shipped BatchNorm checkpoint loaded with
``lncli.load_model``; in your suite it is your own ``nn.Module`` (lncli evaluates a copy of it, so the
module is left exactly as it was). Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` (or
``$LNCLI_DATA``); without it the test is skipped, not passed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lncli
from lncli.data import load_dataset
from lncli.errors import DataError

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "fashion_mnist_small_cnn_bn.pt"


@pytest.fixture(scope="module")
def model():
    return lncli.load_model(CHECKPOINT)


@pytest.fixture(scope="module")
def result(model):
    try:
        load_dataset("fashion-mnist", "test", limit=1)
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    # The first 500 test images, clean and under Gaussian noise; test-batch statistics (prediction-time BN).
    return lncli.evaluate({"mine": model}, "fashion-mnist", noise="gaussian", severity=(0, 3), mode="batch", limit=500)


def test_clean_accuracy_holds(result):
    assert result.check(fail_under="clean=0.85") == []


def test_gaussian_noise_costs_at_most_fifteen_points(result):
    failing = result.check(max_drop=0.15)
    assert failing == [], "\n".join(check.message for check in failing)


def test_the_model_is_left_as_it_was(model, result):
    assert not model.training and not any(type(m).__name__ == "LocalNorm2d" for m in model.modules())
