"""Tests for lncli.jobs.evaluate.modes: the test-time mode table, the runners, and scores/predict."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_helpers import META, cfg, counts, make_ln

from lncli.checkpoint import model_from_checkpoint
from lncli.config.evaluate import MODES
from lncli.data import load_dataset, normalize
from lncli.errors import LncliError
from lncli.jobs.evaluate import (
    MODE_TABLE,
    EvalConfig,
    EvalData,
    LocalNormCopies,
    default_modes,
    evaluate_grid,
    has_localnorm,
    load_checkpoints,
    make_runner,
    predict,
    scores,
)
from lncli.nn import LocalNorm2d
from lncli.records import CLEAN


def test_the_table_names_every_mode_in_order() -> None:
    assert tuple(MODE_TABLE) == MODES


def test_default_modes_follow_the_norm_kind(eval_ckpts: dict[str, Path]) -> None:
    bn, ln = (c.checkpoint for c in load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]]))
    assert default_modes(bn) == ("running", "batch") and default_modes(ln) == ("local",)
    alias = dataclasses.replace(ln, norm=dataclasses.replace(ln.norm, kind="LN"))  # an accepted spelling
    assert default_modes(alias) == ("local",)


@pytest.mark.parametrize(
    ("mode", "heads", "group_size", "uses_copy"),
    [
        ("running", "mean", None, False),
        ("batch", "position", 32, True),
        ("local", "position", 8, True),
        ("single", "mean", 1, True),
        ("vote", "vote", 1, True),
        ("majority", "majority", 1, True),
        ("prior", "position", 32, True),
        ("tent", "position", 32, True),
    ],
)
def test_runners_record_what_shares_statistics(
    eval_ckpts: dict[str, Path], mode: str, heads: str, group_size: int | None, uses_copy: bool
) -> None:
    """BN model: ``running`` calls it as it is; every other mode a one-head LocalNorm copy."""
    model = model_from_checkpoint(load_checkpoints([eval_ckpts["bn"]])[0].checkpoint)
    runner = make_runner(model, mode, heads="position", group_size=8, batch_size=32)
    assert (runner.mode, runner.heads, runner.group_size) == (mode, heads, group_size)
    assert (runner.model is not model) is uses_copy and has_localnorm(runner.model) is uses_copy
    assert not has_localnorm(model)  # the model passed in is never converted


def test_a_bn_models_modes_share_one_copy(eval_ckpts: dict[str, Path]) -> None:
    model = model_from_checkpoint(load_checkpoints([eval_ckpts["bn"]])[0].checkpoint)
    copies = LocalNormCopies()
    a, b = (
        make_runner(model, m, heads="position", group_size=8, batch_size=32, copies=copies) for m in ("batch", "local")
    )
    assert a.model is b.model
    x = normalize(load_dataset("synthetic", "test", limit=32).images, META)
    with torch.inference_mode():  # the shared copy is set up before each call, so the order of calls does not matter
        first = (a.predict(x), b.predict(x))
        assert torch.equal(b.predict(x), first[1]) and torch.equal(a.predict(x), first[0])


def test_unknown_mode_is_one_line(eval_ckpts: dict[str, Path]) -> None:
    model = model_from_checkpoint(load_checkpoints([eval_ckpts["bn"]])[0].checkpoint)
    with pytest.raises(LncliError, match="unknown mode 'bogus'; valid: running, batch"):
        scores(model, torch.zeros(2, 3, 32, 32), "bogus")


def test_batch_mode_depends_on_batch_size(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    """Sanity check that the invariance of running mode is not vacuous: test-batch statistics do move."""
    assert eval_data.clean is not None
    models = load_checkpoints([eval_ckpts["bn"]])
    x = normalize(eval_data.clean.images[:32], META)
    model = model_from_checkpoint(models[0].checkpoint).eval()
    small = torch.cat([predict(model, part, "batch") for part in x.split(4)])
    assert not torch.equal(small, predict(model, x, "batch"))


def test_single_and_vote_agree_for_one_head(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    recs = evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, cfg(modes=("single", "vote")))
    single = [r.correct for r in recs if r.mode == "single"]
    vote = [r.correct for r in recs if r.mode == "vote"]
    assert single == vote
    assert {r.heads for r in recs if r.mode == "vote"} == {"vote"}
    assert {r.group_size for r in recs} == {1}


def test_majority_mode_end_to_end(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    """``majority``: single-image statistics, each head votes its argmax, ties to the lowest class.
    The clean count equals a numpy ``bincount().argmax()`` reference over the heads' predictions
    (single-image statistics do not depend on batching, so the reference runs on the whole set)."""
    assert eval_data.clean is not None
    models = load_checkpoints([eval_ckpts["ln"]])
    recs = evaluate_grid(models, eval_data, cfg(modes=("majority",)))
    assert [(r.mode, r.noise, r.severity) for r in recs] == [("majority", CLEAN, 0), ("majority", "gaussian", 3)]
    assert {r.heads for r in recs} == {"majority"} and {r.group_size for r in recs} == {1}
    model = model_from_checkpoint(models[0].checkpoint).eval()
    layers = [m for m in model.modules() if isinstance(m, LocalNorm2d)]
    x = normalize(eval_data.clean.images, META)
    per_head = []
    with torch.no_grad():
        for h in range(2):  # the checkpoint's two heads
            for layer in layers:
                layer.test_stats, layer.force_head = "single", h
            per_head.append(model(x).argmax(1).numpy())
    votes = np.stack(per_head)  # (H, N)
    preds = np.array([np.bincount(col).argmax() for col in votes.T])
    assert (votes[0] != votes[1]).any(), "the heads disagree somewhere, so ties are exercised"
    assert recs[0].correct == int((preds == eval_data.clean.labels.numpy()).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_position_heads_depend_on_order_mean_heads_do_not(tmp_path: Path, seed: int) -> None:
    """``local`` statistics with whole groups moved isolate the head effect: each group keeps its
    members (so its statistics), and only the head its position picks can change."""
    ln = load_checkpoints([make_ln(tmp_path / "ln.pt", seed=seed, group_size=4, num_heads=2)])[0]
    model = model_from_checkpoint(ln.checkpoint).eval()
    x = normalize(load_dataset("synthetic", "test", limit=16).images, META)  # 4 groups of 4 -> heads 0,1,0,1
    perm = torch.roll(torch.arange(16), 4)  # every group moves to a position with the other head
    for heads, should_commute in (("mean", True), ("position", False)):
        base = scores(model, x, "local", heads=heads, group_size=4)
        moved = scores(model, x[perm], "local", heads=heads, group_size=4)
        err = (moved - base[perm]).abs().max().item()
        assert (err < 1e-5) is should_commute, f"{heads}: max |moved - base[perm]| = {err:.3g}"
    # ...and the per-image modes take the mean whatever --heads says: no position to depend on.
    for mode in ("running", "single"):
        asked = [scores(model, x[perm], mode, heads=heads, group_size=4) for heads in ("position", "mean")]
        assert torch.equal(asked[0], asked[1]), mode
        err = (asked[0] - scores(model, x, mode, group_size=4)[perm]).abs().max().item()
        assert err < 1e-5, f"{mode}: max |moved - base[perm]| = {err:.3g}"


# --- GroupNorm: the batch-independent control (issue 14) ---


def test_groupnorm_checkpoints_run_in_their_only_mode(gn_checkpoint: Path, eval_ckpts: dict[str, Path]) -> None:
    from lncli.jobs.evaluate import is_groupnorm, mode_notes, modes_for

    gn, bn = load_checkpoints([gn_checkpoint, eval_ckpts["bn"]])
    assert is_groupnorm(gn.checkpoint) and not is_groupnorm(bn.checkpoint)
    assert default_modes(gn.checkpoint) == ("groupnorm",)
    for asked in (None, ("running", "batch"), ("local",), ("groupnorm",), ("groupnorm", "single")):
        assert modes_for(gn.checkpoint, asked) == ("groupnorm",), asked
    with pytest.raises(LncliError, match="mode 'groupnorm' runs GroupNorm checkpoints.*bn.pt uses batchnorm"):
        modes_for(bn.checkpoint, ("running", "groupnorm"), "bn.pt")
    # The note: exactly one, only when --mode asked for something else, naming what was not run.
    assert mode_notes([gn, bn], cfg(modes=None)) == [] and mode_notes([gn], cfg(modes=("groupnorm",))) == []
    notes = mode_notes([bn, gn], cfg(modes=("running", "batch")))
    note = "gn.pt uses GroupNorm, which has no test-time statistics; evaluated as it is (mode 'groupnorm')"
    assert notes == [f"{note}, not in running, batch"]


def test_groupnorm_runner_calls_the_model_as_it_is(gn_checkpoint: Path, eval_ckpts: dict[str, Path]) -> None:
    gn_model = model_from_checkpoint(load_checkpoints([gn_checkpoint])[0].checkpoint)
    runner = make_runner(gn_model, "groupnorm", heads="position", group_size=8, batch_size=32)
    assert (runner.mode, runner.heads, runner.group_size, runner.settings) == ("groupnorm", "none", None, None)
    assert runner.model is gn_model
    x = normalize(load_dataset("synthetic", "test", limit=8).images, META)
    with torch.no_grad():
        assert torch.equal(scores(gn_model, x, "groupnorm"), gn_model(x))
    with pytest.raises(LncliError, match="mode 'batch' sets test-time statistics; a GroupNorm model has none"):
        make_runner(gn_model, "batch", heads="position", group_size=8, batch_size=32)
    bn_model = model_from_checkpoint(load_checkpoints([eval_ckpts["bn"]])[0].checkpoint)
    with pytest.raises(LncliError, match="mode 'groupnorm' runs GroupNorm models"):
        make_runner(bn_model, "groupnorm", heads="position", group_size=8, batch_size=32)


def test_groupnorm_counts_do_not_depend_on_batch_size_or_order(gn_checkpoint: Path) -> None:
    """Batch sizes 1, 7 and 128 (and three stream orders) give identical counts, whatever --mode asked."""
    data = EvalData.from_imageset(load_dataset("synthetic", "test", limit=200))
    gn = load_checkpoints([gn_checkpoint])
    runs = [
        evaluate_grid(gn, data, cfg(modes=("running", "batch"), batch_size=bs, order_seed=order))
        for bs in (1, 7, 128)
        for order in (0, 1, None)
    ]
    first = counts(runs[0])
    assert list(first) == [("gn.pt", "groupnorm", CLEAN, 0), ("gn.pt", "groupnorm", "gaussian", 3)]
    assert all(counts(r) == first for r in runs[1:])
    assert first[("gn.pt", "groupnorm", CLEAN, 0)] > 40, "fitted: far above chance (20 of 200)"
    rec = runs[-1][0]
    assert (rec.norm, rec.mode, rec.heads, rec.group_size, rec.batch_size) == (
        "groupnorm",
        "groupnorm",
        "none",
        None,
        128,
    )


# ---------------------------------------------------------------------------
# prior (Schneider et al. 2020) and tent (Wang et al. 2021)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["bn", "ln"])
def test_prior_limits_are_batch_and_running(
    eval_ckpts: dict[str, Path], eval_data: EvalData, kind: str, seed: int
) -> None:
    """N = 0 weighs the running statistics not at all (``batch``); N = 1e12 all but fully (``running``,
    whose affine is the heads' mean: ``prior`` is compared with mean heads there)."""
    assert eval_data.clean is not None
    model = model_from_checkpoint(load_checkpoints([eval_ckpts[kind]])[0].checkpoint)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(eval_data.clean), generator=gen)[: (4, 16, 32)[seed]]
    x = normalize(eval_data.clean.images[idx], META)
    for n_prior, same_as, heads in ((0.0, "batch", "position"), (1e12, "running", "mean")):
        got = scores(model, x, "prior", heads=heads, group_size=8, prior_n=n_prior)
        want = scores(model, x, same_as, group_size=8)
        err = (got - want).abs().max().item()
        assert err < 1e-4, f"prior N={n_prior:g} vs {same_as}: max |diff| = {err:.3g}"
        assert torch.equal(got.argmax(1), want.argmax(1))
    middle = scores(model, x, "prior", group_size=8, prior_n=16.0)
    assert not torch.allclose(middle, scores(model, x, "batch", group_size=8), atol=1e-3)
    assert not torch.allclose(middle, scores(model, x, "running", group_size=8), atol=1e-3)


def test_prior_and_tent_records_carry_their_settings(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    models = load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]])
    conf = cfg(modes=("batch", "prior", "tent"), prior_n=4.0, tent_lr=2e-3, tent_steps=2)
    recs = evaluate_grid(models, eval_data, conf)
    for r in recs:
        assert r.prior_n == (4.0 if r.mode == "prior" else None)
        assert (r.tent_lr, r.tent_steps) == ((2e-3, 2) if r.mode == "tent" else (None, None))
    tent_g = {Path(r.checkpoint).stem: r.group_size for r in recs if r.mode == "tent"}
    assert tent_g == {"bn": 16, "ln": 8}  # BN adapts with batch statistics, LocalNorm with its local groups


def _tent_conf(**kw: object) -> EvalConfig:
    base = {"modes": ("batch", "tent"), "noises": ("gaussian", "impulse"), "severities": (0, 5), "tent_lr": 5e-2}
    base.update(kw)
    return cfg(**base)


@pytest.mark.parametrize("kind", ["bn", "ln"])
def test_tent_cells_do_not_leak_and_runs_repeat(eval_ckpts: dict[str, Path], eval_data: EvalData, kind: str) -> None:
    """Each cell adapts from the checkpoint's weights: a cell run with others equals that cell run alone
    (so the state is reset between cells and kept per cell while the grid interleaves them), and two runs agree."""
    models = load_checkpoints([eval_ckpts[kind]])
    together = evaluate_grid(models, eval_data, _tent_conf())
    assert together == evaluate_grid(models, eval_data, _tent_conf())  # reproducible
    for noise, sev in (("gaussian", 5), ("impulse", 5)):
        alone = evaluate_grid(models, eval_data, _tent_conf(noises=(noise,), severities=(sev,)))
        want = [r for r in together if (r.noise, r.severity) == (noise, sev)]
        assert [(r.mode, r.hits) for r in alone] == [(r.mode, r.hits) for r in want]
    # TENT really adapted somewhere (else the test above would be vacuous), and the batch column did not.
    tent, batch = ([r for r in together if r.mode == m] for m in ("tent", "batch"))
    assert any(t.hits != b.hits for t, b in zip(tent, batch))
    plain = evaluate_grid(models, eval_data, _tent_conf(modes=("batch",)))
    assert [r.hits for r in batch] == [r.hits for r in plain]


def test_tent_first_batch_is_the_unadapted_prediction(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    """One batch per cell: nothing to adapt before the prediction, so tent equals its model's default statistics."""
    models = load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]])
    conf = _tent_conf(modes=("batch", "local", "tent"), noises=("gaussian",), group_size=4, batch_size=60)
    recs = evaluate_grid(models, eval_data, conf)
    for ck, own in (("bn", "batch"), ("ln", "local")):
        by_mode = {(r.mode, r.noise, r.severity): r.hits for r in recs if Path(r.checkpoint).stem == ck}
        for (mode, noise, sev), hits in by_mode.items():
            if mode == "tent":
                assert hits == by_mode[(own, noise, sev)]


def test_tent_is_refused_under_torchrun(
    eval_ckpts: dict[str, Path], eval_data: EvalData, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.distributed as dist

    # Rank 0 of 2, as torchrun would make it (lncli.distributed asks torch.distributed).
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    with pytest.raises(LncliError, match="mode tent adapts along the whole test stream"):
        evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, _tent_conf())


def test_tent_leaves_the_checkpoint_model_alone(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    assert eval_data.clean is not None
    for kind in ("bn", "ln"):
        model = model_from_checkpoint(load_checkpoints([eval_ckpts[kind]])[0].checkpoint)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        runner = make_runner(model, "tent", heads="position", group_size=4, batch_size=16, tent_lr=0.1)
        assert runner.adapter is not None and runner.model is not model
        x = normalize(eval_data.clean.images[:32], META)
        with torch.inference_mode():
            for part in x.split(16):
                runner.predict(part)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
