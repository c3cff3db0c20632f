"""Tests for lncli.jobs.evaluate.grid: records, batch-composition rules, settings, sharding and the rescale."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_helpers import LIMIT, META, cfg, counts, make_bn

from lncli.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from lncli.data import load_dataset, normalize
from lncli.errors import LncliError
from lncli.jobs.evaluate import EvalConfig, EvalData, column_keys, evaluate_grid, load_checkpoints, plan_grid, run_grid
from lncli.jobs.evaluate.grid import batch_order
from lncli.records import CLEAN, JSON_FIELDS, RECORD_FIELDS, EvalRecord, unpack_hits

# ---------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------


def test_records_schema_and_defaults(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    models = load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]])
    recs = evaluate_grid(models, eval_data, cfg())
    # BN -> running + batch, LN -> local; 2 cells each (clean, gaussian 3)
    assert [(Path(r.checkpoint).stem, r.mode, r.noise, r.severity) for r in recs] == [
        ("bn", "running", CLEAN, 0),
        ("bn", "running", "gaussian", 3),
        ("bn", "batch", CLEAN, 0),
        ("bn", "batch", "gaussian", 3),
        ("ln", "local", CLEAN, 0),
        ("ln", "local", "gaussian", 3),
    ]
    for r in recs:
        assert tuple(r.to_dict()) == JSON_FIELDS and set(RECORD_FIELDS) == set(JSON_FIELDS) - {"hits"}
        assert r.n == LIMIT and 0 <= r.correct <= r.n
        assert r.hits is not None and int(unpack_hits(r.hits, LIMIT).sum()) == r.correct
        assert r.accuracy == r.correct / r.n and r.ci_low <= r.accuracy <= r.ci_high
        assert len(r.sha256) == 12 and r.device == "cpu" and r.synthetic and r.data == "synthetic"
        assert r.batch_size == 16 and r.noise_seed == 0 and r.order_seed == 0 and r.world_size == 1
    assert [r.group_size for r in recs[::2]] == [None, 16, 8]  # running, whole batch, the LN checkpoint's G
    assert recs[1].param == pytest.approx(0.18) and recs[1].profile == "imagenet-c"
    assert recs[0].param == 0.0 and recs[0].profile == "none"


def test_column_keys_name_the_records_columns_in_order(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    models = load_checkpoints([eval_ckpts["ln"], eval_ckpts["bn"]])
    for config in (cfg(), cfg(modes=("single", "running"))):
        keys = [(k.checkpoint, k.mode) for k in column_keys(models, config)]
        recs = evaluate_grid(models, eval_data, config)
        assert keys == list(dict.fromkeys((r.checkpoint, r.mode) for r in recs))


def test_batch_order_is_a_seeded_permutation() -> None:
    labels = torch.arange(50) % 10
    assert torch.equal(batch_order(labels[:7], "shuffled", None), torch.arange(7))  # no seed: the dataset order
    assert torch.equal(batch_order(labels[:7], "dataset", 3), torch.arange(7))
    for seed in range(3):
        order = batch_order(labels, "shuffled", seed)
        assert torch.equal(order.sort().values, torch.arange(50))
        assert torch.equal(order, batch_order(labels, "shuffled", seed))
    assert not torch.equal(batch_order(labels, "shuffled", 0), batch_order(labels, "shuffled", 1))


def test_deterministic_and_prefetch_invariant(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    models = load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]])
    a = evaluate_grid(models, eval_data, cfg())
    b = evaluate_grid(models, eval_data, cfg())
    c = evaluate_grid(models, eval_data, cfg(workers=2))
    assert a == b == c


@pytest.mark.parametrize("seed", range(3))
def test_hits_are_each_images_own_prediction(eval_ckpts: dict[str, Path], eval_data: EvalData, seed: int) -> None:
    # Independent reference: the model run on each image alone (running statistics do not
    # depend on the batch), noise from lncli.noise.corrupt keyed by the global index.
    from lncli.noise import corrupt

    assert eval_data.clean is not None
    models = load_checkpoints([eval_ckpts["bn"]])
    conf = cfg(modes=("running",), noises=("gaussian",), severities=(0, 3), seed=seed, order_seed=seed, batch_size=7)
    recs = evaluate_grid(models, eval_data, conf)
    model = model_from_checkpoint(models[0].checkpoint)
    images, labels = eval_data.clean.images, eval_data.clean.labels
    idx = torch.arange(len(labels))
    for rec, x in zip(recs, (images, corrupt(images, "gaussian", 3, seed=seed, indices=idx))):
        with torch.no_grad():
            want = (model(normalize(x, META)).argmax(1) == labels).numpy()
        assert rec.hits is not None
        np.testing.assert_array_equal(unpack_hits(rec.hits, len(labels)), want)


def test_each_batch_is_read_once_for_all_cells(
    eval_ckpts: dict[str, Path], eval_data: EvalData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lncli.jobs.evaluate.sources import GeneratedNoise

    reads: list[int] = []
    given: list[bool] = []
    clean_batches, batch = GeneratedNoise.clean_batches, GeneratedNoise.batch

    def counting_clean(self: GeneratedNoise, batches: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        for x in clean_batches(self, batches):
            reads.append(len(x))
            yield x

    def checking_batch(self: GeneratedNoise, cell, indices, clean=None):  # type: ignore[no-untyped-def]
        given.append(clean is not None and len(clean) == len(indices))
        return batch(self, cell, indices, clean)

    monkeypatch.setattr(GeneratedNoise, "clean_batches", counting_clean)
    monkeypatch.setattr(GeneratedNoise, "batch", checking_batch)
    recs = evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, cfg(severities=(0, 2, 4), batch_size=16))
    assert reads == [16, 16, 16, 12]  # LIMIT = 60 images read once, whatever the number of cells
    assert len(given) == 4 * 3 and all(given) and len(recs) == 2 * 3


def test_running_mode_invariant_to_batch_size_and_order(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    models = load_checkpoints([eval_ckpts["bn"]])
    runs = [
        counts(
            evaluate_grid(
                models, eval_data, cfg(modes=("running",), batch_size=bs, order_seed=o, noises=("gaussian", "impulse"))
            )
        )
        for bs, o in ((1, 0), (7, 0), (16, 0), (60, 0), (16, 5), (16, None))
    ]
    assert all(r == runs[0] for r in runs), runs


@pytest.mark.parametrize("limit", [48, 60])  # whole batches, and a ragged last batch of 12
def test_ln_local_with_G_equal_batch_equals_bn_batch_stats(tmp_path: Path, limit: int) -> None:
    from lncli.jobs.convert import convert_checkpoint

    bn_path = make_bn(tmp_path / "bn.pt", seed=3)
    bn = load_checkpoints([bn_path])[0]
    ln_ckpt, _ = convert_checkpoint(bn.checkpoint, "localnorm", group_size=16, num_heads=1)
    save_checkpoint(ln_ckpt, tmp_path / "ln.pt")
    ln = load_checkpoints([tmp_path / "ln.pt"])[0]
    d = EvalData.from_imageset(load_dataset("synthetic", "test", limit=limit))
    conf = cfg(noises=("gaussian", "shot"), severities=(0, 2, 5))
    a = evaluate_grid([bn], d, dataclasses.replace(conf, modes=("batch",)))
    b = evaluate_grid([ln], d, dataclasses.replace(conf, modes=("local",), group_size=16))
    assert [r.correct for r in a] == [r.correct for r in b]


def test_progress_reports_every_image(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    seen: list[tuple[int, int]] = []
    evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, cfg(), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (LIMIT * 2 * 2, LIMIT * 2 * 2)  # images x cells x columns
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"batch_size": 0}, "--batch-size must be >= 1"),
        ({"group_size": 0}, "--group-size must be >= 1"),
        ({"modes": ("bogus",)}, "unknown mode 'bogus'"),
        ({"heads": "vote"}, "unknown heads"),
        ({"noises": ("nope",)}, "unknown noise 'nope'"),
        ({"severities": (0, 6)}, "severity"),
        ({"profile": "nope"}, "unknown profile"),
        ({"batch_sizes": (0, 16)}, "--batch-size must be >= 1, got 0"),
        ({"prior_n": -1.0}, "--prior-n must be a finite number >= 0, got -1.0"),
        ({"prior_n": float("nan")}, "--prior-n"),
        ({"tent_lr": 0.0}, "--tent-lr must be > 0, got 0.0"),
        ({"tent_steps": 0}, "--tent-steps must be >= 1"),
        ({"order": "bogus"}, "unknown --order 'bogus'; valid: shuffled, sorted, dataset"),
    ],
)
def test_bad_settings_raise_one_line(eval_ckpts: dict[str, Path], eval_data: EvalData, kw: dict, msg: str) -> None:
    with pytest.raises(LncliError, match=re.escape(msg) if "--" in msg else msg) as info:
        evaluate_grid(load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]]), eval_data, cfg(**kw))
    assert "\n" not in str(info.value)


def test_no_checkpoint_and_no_cell_are_refused(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    with pytest.raises(LncliError, match="no checkpoint to evaluate"):
        evaluate_grid([], eval_data, cfg())
    for kw, msg in (({"noises": ()}, "no noise"), ({"severities": ()}, "no severity"), ({"workers": -1}, "--workers")):
        with pytest.raises(LncliError, match=msg):
            evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, cfg(**kw))


def test_paper_profile_aliases_are_recorded(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    recs = evaluate_grid(
        load_checkpoints([eval_ckpts["bn"]]), eval_data, cfg(modes=("running",), noises=("shot",), profile="paper")
    )
    assert [(r.noise, r.profile) for r in recs] == [(CLEAN, "none"), ("poisson", "paper")]


# ---------------------------------------------------------------------------
# distributed: 2 CPU processes (gloo) give the single-process counts
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dist_worker(rank: int, world: int, port: int, paths: list[str], conf: EvalConfig, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0"
    )
    torch.set_num_threads(1)
    from lncli.distributed import cleanup, init_distributed

    init_distributed(torch.device("cpu"))
    try:
        d = EvalData.from_imageset(load_dataset("synthetic", "test", limit=LIMIT))
        recs = evaluate_grid(load_checkpoints(paths), d, conf)
        torch.save([r.to_dict() for r in recs], f"{out}.{rank}")
    finally:
        cleanup()


def test_two_process_gloo_sharding_matches_single_process(
    eval_ckpts: dict[str, Path], eval_data: EvalData, tmp_path: Path
) -> None:
    import torch.multiprocessing as mp

    paths = [str(eval_ckpts["bn"]), str(eval_ckpts["ln"])]
    conf = cfg(modes=None, noises=("gaussian", "impulse"), severities=(0, 4))
    single = evaluate_grid(load_checkpoints(paths), eval_data, conf)
    out = str(tmp_path / "recs")
    mp.spawn(_dist_worker, args=(2, _free_port(), paths, conf, out), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert [(g["correct"], g["n"], g["hits"]) for g in got] == [(r.correct, r.n, r.hits) for r in single]
        assert {g["world_size"] for g in got} == {2}


# ---------------------------------------------------------------------------
# the paper's dataset-level min-max rescale
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("noise, severity", [("gaussian", 5), ("poisson", 3), ("dropout", 4)])
def test_paper_rescale_matches_whole_set_reference(
    eval_ckpts: dict[str, Path], eval_data: EvalData, noise: str, severity: int
) -> None:
    """Batched evaluation with --rescale equals rescaling the whole noisy set at once (corruptions.rescale_minmax)."""
    from lncli.noise import corrupt, rescale_minmax

    assert eval_data.clean is not None
    config = cfg(profile="paper", noises=(noise,), severities=(severity,), modes=("running",), rescale=True)
    (rec,) = evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, config)
    images, labels = eval_data.clean.images, eval_data.clean.labels
    noisy = corrupt(images.float() / 255.0, noise, severity, seed=0, profile="paper")  # unclipped floats
    x = rescale_minmax(noisy, reference=images)
    model = model_from_checkpoint(load_checkpoint(eval_ckpts["bn"])).eval()
    with torch.inference_mode():
        expected = int((model(normalize(x, META)).argmax(1) == labels).sum())
    assert rec.rescale and rec.profile == "paper" and rec.rescale_range == "test"
    assert rec.correct == expected, f"batched rescale {rec.correct} != whole-set reference {expected}"


def test_paper_rescale_changes_the_input_and_needs_the_paper_profile(
    eval_ckpts: dict[str, Path], eval_data: EvalData
) -> None:
    models = load_checkpoints([eval_ckpts["bn"]])
    base = {"profile": "paper", "noises": ("gaussian",), "severities": (0, 5), "modes": ("running",)}
    plain, scaled = (evaluate_grid(models, eval_data, cfg(**base, rescale=r)) for r in (False, True))
    assert [r.rescale for r in scaled] == [False, True]  # the clean row is never rescaled
    assert [r.rescale_range for r in scaled] == [None, "test"]  # no training split was given
    assert {r.rescale_range for r in plain} == {None}
    assert plain[0].correct == scaled[0].correct
    with pytest.raises(LncliError, match="--profile paper"):
        evaluate_grid(models, eval_data, cfg(rescale=True))


def _watched(models: list, data: EvalData, config: EvalConfig) -> tuple[list[EvalRecord], list[torch.Tensor]]:
    """The records of a sweep, and every batch it fed the models (``run_grid``'s ``on_batch`` hook)."""
    seen: list[torch.Tensor] = []
    records = run_grid(plan_grid(models, data, config), on_batch=lambda _row, x, _y: seen.append(x.clone()))
    return records, seen


def _minmax_reference(
    images: torch.Tensor, noise: str, severity: int, seed: int, lo: np.ndarray, hi: np.ndarray
) -> torch.Tensor:
    """The authors' rescale written out in float64 on the whole set: each channel's noisy [min, max] -> [lo, hi]."""
    from lncli.noise import corrupt

    noisy = corrupt(images.float() / 255.0, noise, severity, seed=seed, profile="paper").double().numpy()  # unclipped
    nlo, nhi = noisy.min(axis=(0, 2, 3), keepdims=True), noisy.max(axis=(0, 2, 3), keepdims=True)  # (1, C, 1, 1)
    lo, hi = lo.reshape(1, -1, 1, 1), hi.reshape(1, -1, 1, 1)
    out = (noisy - nlo) / (nhi - nlo) * (hi - lo) + lo
    return torch.from_numpy(np.clip(out, 0.0, 1.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noise, severity", [("gaussian", 5), ("poisson", 2), ("dropout", 4)])
def test_paper_rescale_maps_onto_the_training_range(
    eval_ckpts: dict[str, Path],
    eval_data: EvalData,
    monkeypatch: pytest.MonkeyPatch,
    noise: str,
    severity: int,
    seed: int,
) -> None:
    """With a training split whose per-channel range differs from the test set's, the noisy batches are the
    whole noisy test set mapped onto the TRAINING range (the authors' protocol), and the records say so."""
    assert eval_data.clean is not None
    train = load_dataset("synthetic", "train").images.numpy()  # (N, 3, 32, 32), every channel spans 0..255
    train = (train // 2 + np.array([10, 40, 90], dtype=np.uint8)[None, :, None, None]).astype(
        np.uint8
    )  # 10..137, 40..167, 90..217
    lo, hi = train.min(axis=(0, 2, 3)) / 255.0, train.max(axis=(0, 2, 3)) / 255.0  # float64, computed here
    assert not np.allclose(lo, 0.0) and not np.allclose(hi, 1.0)  # differs from the test set's [0, 1]
    train_range = (torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32))
    with_train = EvalData.from_imageset(eval_data.clean, train_range=train_range)
    config = cfg(
        profile="paper",
        noises=(noise,),
        severities=(severity,),
        modes=("running",),
        rescale=True,
        seed=seed,
        order_seed=None,
    )
    (rec,), batches = _watched(load_checkpoints([eval_ckpts["bn"]]), with_train, config)
    got = torch.cat(batches).double()  # dataset order (order_seed None), the ragged last batch included
    expected = _minmax_reference(eval_data.clean.images, noise, severity, seed, lo, hi)
    err = (got - expected).abs().max().item()
    torch.testing.assert_close(
        got, expected, rtol=1e-5, atol=1e-6, msg=f"max error {err:.3g} against the training-range reference"
    )
    onto_test = _minmax_reference(eval_data.clean.images, noise, severity, seed, np.zeros(3), np.ones(3))
    assert (got - onto_test).abs().max().item() > 0.05  # the reference range really changed the input
    assert rec.rescale and rec.rescale_range == "train" and rec.n == LIMIT


# ---------------------------------------------------------------------------
# deployment conditions: stream order, batch sizes as an axis (issue 14)
# ---------------------------------------------------------------------------


def test_sorted_order_yields_batches_of_few_classes(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    assert eval_data.clean is not None
    labels = eval_data.clean.labels
    models = load_checkpoints([eval_ckpts["bn"]])
    seen: dict[str, list[torch.Tensor]] = {}
    recs = {}
    for order in ("sorted", "shuffled"):
        plan = plan_grid(models, eval_data, cfg(modes=("batch",), order=order, batch_size=8))
        seen[order] = list(plan.order.split(8))  # the batches, in stream order
        recs[order] = run_grid(plan)
    sorted_batches = seen["sorted"]
    # Stable sort by label: consecutive batches walk the classes in turn, dataset order within a class.
    assert torch.equal(torch.cat(sorted_batches), torch.sort(labels, stable=True).indices)
    per_batch = [len(set(labels[b].tolist())) for b in sorted_batches]
    counts_per_class = torch.bincount(labels)
    assert max(per_batch) <= 1 + -(-8 // int(counts_per_class[counts_per_class > 0].min()))  # few classes
    assert sum(per_batch) / len(per_batch) < 2.5
    assert sum(len(set(labels[b].tolist())) for b in seen["shuffled"]) / len(seen["shuffled"]) > 4  # mixed classes
    for order, rs in recs.items():
        assert {(r.order, r.order_seed) for r in rs} == {(order, 0 if order == "shuffled" else None)}


def test_order_seed_none_is_the_dataset_order(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    models = load_checkpoints([eval_ckpts["bn"]])
    alias = evaluate_grid(models, eval_data, cfg(modes=("batch",), order_seed=None))
    named = evaluate_grid(models, eval_data, cfg(modes=("batch",), order="dataset", order_seed=7))
    assert [(r.order, r.order_seed, r.hits) for r in alias] == [("dataset", None, r.hits) for r in named]


def test_batch_sizes_are_an_axis(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    """Each size's records equal a single-size run's, in the order given; every size sees the same order."""
    models = load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]])
    modes = ("batch", "local", "prior")
    sweep = evaluate_grid(models, eval_data, cfg(modes=modes, group_size=8, batch_sizes=(16, 8, 24)))
    assert [r.batch_size for r in sweep] == [16] * 12 + [8] * 12 + [24] * 12  # 2 ckpts x 3 modes x 2 cells each
    for b in (16, 8, 24):
        single = evaluate_grid(models, eval_data, cfg(modes=modes, group_size=8, batch_size=b))
        assert [r for r in sweep if r.batch_size == b] == single
    batch_rows = {(r.batch_size, r.noise): r.group_size for r in sweep if r.mode == "batch"}
    assert batch_rows[(8, CLEAN)] == 8 and batch_rows[(24, CLEAN)] == 24


def test_batch_size_sweep_progress_counts_every_size(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    seen: list[tuple[int, int]] = []
    conf = cfg(modes=("running",), batch_sizes=(1, 16))
    evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, conf, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (LIMIT * 2 * 2, LIMIT * 2 * 2)  # images x cells x sizes (one column)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {t for _, t in seen} == {LIMIT * 4}


def test_bn_batch_equals_single_at_batch_size_1(eval_ckpts: dict[str, Path], eval_data: EvalData) -> None:
    """One image per batch: the batch's statistics are the image's own, so batch and single agree image by image."""
    conf = cfg(modes=("batch", "single"), batch_size=1, noises=("gaussian", "impulse"), severities=(0, 4))
    recs = evaluate_grid(load_checkpoints([eval_ckpts["bn"]]), eval_data, conf)
    batch = [r.hits for r in recs if r.mode == "batch"]
    single = [r.hits for r in recs if r.mode == "single"]
    assert batch == single and len(batch) == 3
    # The same statistics: the very same logits, image by image (and they differ between images).
    from lncli.jobs.evaluate import scores

    assert eval_data.clean is not None
    model = model_from_checkpoint(load_checkpoint(eval_ckpts["bn"]))
    x = normalize(eval_data.clean.images[:6], META)
    outs = [(scores(model, x[i : i + 1], "batch"), scores(model, x[i : i + 1], "single")) for i in range(6)]
    assert all(torch.equal(b, s) for b, s in outs)
    assert not torch.allclose(outs[0][0], outs[1][0])
