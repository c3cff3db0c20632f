"""Test-time control (lncli.nn.testtime): set_test_mode, and voting over heads against manual loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from localnorm_reference import assert_close, random_heads
from torch import nn

from lncli.errors import LncliError
from lncli.nn import LocalNorm2d, localnorm_layers, majority_predict, set_test_mode, vote_predict


@pytest.mark.parametrize("seed", range(3))
def test_vote_predict_equals_manual_loop(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        LocalNorm2d(4, group_size=2, num_heads=3, test_stats="single"),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        LocalNorm2d(4, group_size=2, num_heads=2, test_stats="local"),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 6),
    )
    for layer in localnorm_layers(model):
        random_heads(layer, gen)
    x = torch.randn(4, 3, 5, 5, generator=gen)
    model.train()
    probs = vote_predict(model, x)
    assert model.training and all(m.training for m in model.modules()), "train flags restored"
    assert all(layer.force_head is None for layer in localnorm_layers(model)), "force_head restored"
    model.eval()
    manual = torch.zeros(4, 6)
    with torch.no_grad():
        for h in range(3):  # max heads; layers with fewer heads wrap around
            for layer in localnorm_layers(model):
                layer.force_head = h % layer.num_heads
            manual += torch.softmax(model(x), -1)
    manual /= 3
    assert_close(probs, manual, "vote")
    assert_close(probs.sum(-1), torch.ones(4), "probabilities sum to 1")


def _per_head_argmax(model: nn.Module, x: torch.Tensor, n_heads: int) -> np.ndarray:
    """(H, N) predictions of every head, by a manual force_head loop."""
    preds = []
    model.eval()
    with torch.no_grad():
        for h in range(n_heads):
            for layer in localnorm_layers(model):
                layer.force_head = h % layer.num_heads
            preds.append(model(x).argmax(-1).numpy())
    for layer in localnorm_layers(model):
        layer.force_head = None
    return np.stack(preds)


@pytest.mark.parametrize("seed", range(5))
def test_majority_predict_equals_bincount_reference(seed: int) -> None:
    """The authors' rule: per sample, np.bincount(per-head argmaxes).argmax() (ties -> lowest class)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    k = 3  # few classes and an even number of heads: ties happen
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        LocalNorm2d(4, group_size=2, num_heads=4, test_stats="single"),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        LocalNorm2d(4, group_size=2, num_heads=2, test_stats="local"),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, k),
    )
    for layer in localnorm_layers(model):
        random_heads(layer, gen)
        with torch.no_grad():
            layer.head_weight.mul_(3.0)  # heads that disagree
    x = torch.randn(32, 3, 5, 5, generator=gen)
    model.train()
    counts = majority_predict(model, x)
    assert model.training and all(layer.force_head is None for layer in localnorm_layers(model)), "state restored"
    preds = _per_head_argmax(model, x, 4)
    ref_counts = np.stack([np.bincount(col, minlength=k) for col in preds.T])
    ref = np.array([np.bincount(col).argmax() for col in preds.T])
    assert np.array_equal(counts.numpy(), ref_counts), (counts, ref_counts)
    assert np.array_equal(counts.argmax(1).numpy(), ref)


@pytest.mark.parametrize(
    "winners,expected",
    [((1, 1, 3, 3), 1), ((3, 0, 3, 0), 0), ((2, 0, 1), 0), ((1, 3, 3), 3), ((3, 3, 3, 2), 3)],
)
def test_majority_breaks_ties_to_the_lowest_class(winners: tuple[int, ...], expected: int) -> None:
    """Constructed votes: head h predicts class winners[h] (its bias; the weights are 0)."""
    h, k = len(winners), 4
    ln = LocalNorm2d(k, num_heads=h, test_stats="running").eval()
    with torch.no_grad():
        ln.head_weight.zero_()
        ln.head_bias.copy_(torch.eye(k)[list(winners)] * torch.linspace(0.2, 5.0, h)[:, None])  # (H, K)
    model = nn.Sequential(ln, nn.Flatten())
    x = torch.randn(3, k, 1, 1)
    preds = np.array(winners)
    assert np.bincount(preds).argmax() == expected  # the reference agrees with the table
    counts = majority_predict(model, x)
    assert counts.tolist() == [np.bincount(preds, minlength=k).tolist()] * 3
    assert majority_predict(model, x).argmax(1).tolist() == [expected] * 3
    if winners == (1, 1, 3, 3):  # the softmax average follows the two confident heads instead
        assert vote_predict(model, x).argmax(1).tolist() == [3] * 3


# --------------------------------------------------------------------------- helpers and errors


def test_set_test_mode_sets_every_layer_and_rejects_bad_values() -> None:
    model = nn.Sequential(LocalNorm2d(2), nn.BatchNorm2d(2), nn.Sequential(LocalNorm2d(2)))
    assert set_test_mode(model, stats="single", heads="mean", group_size=4) is model
    for layer in localnorm_layers(model):
        assert (layer.test_stats, layer.test_heads, layer.group_size) == ("single", "mean", 4)
    with pytest.raises(LncliError, match="running, batch, local, single"):
        set_test_mode(model, stats="bogus")
    with pytest.raises(LncliError, match="position, mean, vote"):
        set_test_mode(model, heads="bogus")
    with pytest.raises(LncliError, match="group_size"):
        set_test_mode(model, group_size=0)
    assert all(layer.test_stats == "single" for layer in localnorm_layers(model)), "nothing changed on error"
    with pytest.raises(LncliError, match="grouping"):
        LocalNorm2d(2, grouping="random")
    with pytest.raises(LncliError, match="num_heads"):
        LocalNorm2d(2, num_heads=0)
    with pytest.raises(LncliError):
        model[0].test_stats = "nope"
    model[0].force_head = 5
    with pytest.raises(ValueError, match="force_head"):
        model[0](torch.randn(2, 2, 2, 2))


def test_set_test_mode_sets_and_checks_prior_n() -> None:
    model = nn.Sequential(LocalNorm2d(3), nn.ReLU(), LocalNorm2d(3))
    set_test_mode(model, stats="prior", prior_n=4)
    assert [(m.test_stats, m.prior_n) for m in localnorm_layers(model)] == [("prior", 4.0), ("prior", 4.0)]
    assert "prior_n=4" in repr(model)
    for bad in (-1, float("inf"), float("nan"), True, "3"):
        with pytest.raises(LncliError, match="prior N"):
            set_test_mode(model, prior_n=bad)  # type: ignore[arg-type]
    assert all(m.prior_n == 4.0 for m in localnorm_layers(model))  # checked before any layer changed
