"""Tests for lncli.evaluate: argument resolution, records, batch-composition rules and sharding.

Models are the ``tiny`` test net on the synthetic dataset, fitted for a few steps so that
every mode gives distinct, non-trivial predictions.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from lncli.checkpoint import NormSpec, build_model, checkpoint_from_model, save_checkpoint
from lncli.data import DATASETS, load_dataset, normalize
from lncli.errors import DataError, LncliError
from lncli.evaluate import (
    CLEAN,
    RECORD_FIELDS,
    EvalConfig,
    EvalData,
    EvalRecord,
    evaluate_grid,
    image_range,
    load_checkpoints,
    parse_list,
    parse_severities,
    predict,
    resolve_checkpoint_paths,
    resolve_data,
    scores,
)
from lncli.models import create_model
from lncli.norm import LocalNorm2d

META = DATASETS["synthetic"]
LIMIT = 60  # 60 = 3 batches of 16 + a ragged batch of 12


def _fit(model: torch.nn.Module, seed: int, steps: int = 40) -> torch.nn.Module:
    """A few Adam steps on synthetic train images (~1 s), so that predictions are far from chance
    and modes really differ; the tests compare counts and predictions, never accuracy levels."""
    train = load_dataset("synthetic", "train", limit=1024)
    x_all, y_all = normalize(train.images, META), train.labels
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y_all), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def make_bn(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = _fit(create_model("tiny", num_classes=10, in_channels=3), seed)
    ckpt = checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=NormSpec("batchnorm"), data=META)
    save_checkpoint(ckpt, path)
    return path


def make_ln(path: Path, seed: int = 0, *, group_size: int = 8, num_heads: int = 2) -> Path:
    """A LocalNorm tiny net whose heads differ strongly (so the head choice changes predictions)."""
    from lncli.convert import convert_batchnorm_to_localnorm

    # Fitted as BN then converted: these tests are about evaluation, not LocalNorm training.
    torch.manual_seed(seed)
    bn = _fit(create_model("tiny", num_classes=10, in_channels=3), seed)
    model = convert_batchnorm_to_localnorm(bn, group_size=group_size, num_heads=num_heads).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LocalNorm2d):
                m.head_weight.mul_(1 + 0.5 * torch.randn_like(m.head_weight))
                m.head_bias.add_(0.5 * torch.randn_like(m.head_bias))
    norm = NormSpec("localnorm", group_size=group_size, num_heads=num_heads)
    save_checkpoint(checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=norm, data=META), path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    return {"bn": make_bn(d / "bn.pt"), "ln": make_ln(d / "ln.pt")}


@pytest.fixture(scope="module")
def data() -> EvalData:
    return EvalData.from_imageset(load_dataset("synthetic", "test", limit=LIMIT))


def cfg(**kw: object) -> EvalConfig:
    base = dict(noises=("gaussian",), severities=(0, 3), batch_size=16, device="cpu")
    base.update(kw)
    return EvalConfig(**base)  # type: ignore[arg-type]


def counts(records: list[EvalRecord]) -> dict[tuple[str, str, str, int], int]:
    return {(Path(r.checkpoint).name, r.mode, r.noise, r.severity): r.correct for r in records}


# ---------------------------------------------------------------------------
# argument parsing and loading
# ---------------------------------------------------------------------------


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


def test_parse_helpers() -> None:
    assert parse_severities("0-5") == (0, 1, 2, 3, 4, 5)
    assert parse_severities("5,1,2-3") == (1, 2, 3, 5)
    for bad in ("", "a", "3-1", "1,,x"):
        with pytest.raises(LncliError, match="--severity"):
            parse_severities(bad)
    assert parse_list("batch,running,batch", ("running", "batch"), "mode") == ("batch", "running")
    assert parse_list("all", ("running", "batch"), "mode") == ("running", "batch")
    with pytest.raises(LncliError, match="unknown mode 'bogus'; valid: running, batch"):
        parse_list("bogus", ("running", "batch"), "mode")


def test_load_rejects_non_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "junk.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(LncliError):
        load_checkpoints([bad])


def test_resolve_data_default_and_mismatch(ckpts: dict[str, Path], tmp_path: Path) -> None:
    models = load_checkpoints([ckpts["bn"], ckpts["ln"]])
    d = resolve_data(None, models, limit=10)
    assert d.name == "synthetic" and d.synthetic and len(d.clean) == 10
    with pytest.raises(DataError, match="channels 1 in the data, 3 in the model"):
        resolve_data("synthetic-gray", models, limit=10)
    # checkpoints that disagree on their dataset need --data
    other = load_checkpoints([ckpts["bn"]])[0]
    gray_meta = DATASETS["synthetic-gray"]
    fake = dataclasses.replace(other, checkpoint=dataclasses.replace(other.checkpoint, data=gray_meta))
    with pytest.raises(LncliError, match="different datasets"):
        resolve_data(None, [models[0], fake], limit=10)


# ---------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------


def test_records_schema_and_defaults(ckpts: dict[str, Path], data: EvalData) -> None:
    models = load_checkpoints([ckpts["bn"], ckpts["ln"]])
    recs = evaluate_grid(models, data, cfg())
    # BN -> running + batch, LN -> local; 2 cells each (clean, gaussian 3)
    assert [(Path(r.checkpoint).stem, r.mode, r.noise, r.severity) for r in recs] == [
        ("bn", "running", CLEAN, 0), ("bn", "running", "gaussian", 3),
        ("bn", "batch", CLEAN, 0), ("bn", "batch", "gaussian", 3),
        ("ln", "local", CLEAN, 0), ("ln", "local", "gaussian", 3),
    ]  # fmt: skip
    for r in recs:
        assert tuple(r.to_dict()) == RECORD_FIELDS
        assert r.n == LIMIT and 0 <= r.correct <= r.n
        assert r.accuracy == r.correct / r.n and r.ci_low <= r.accuracy <= r.ci_high
        assert len(r.sha256) == 12 and r.device == "cpu" and r.synthetic and r.data == "synthetic"
        assert r.batch_size == 16 and r.noise_seed == 0 and r.order_seed == 0 and r.world_size == 1
    assert [r.group_size for r in recs[::2]] == [None, 16, 8]  # running, whole batch, the LN checkpoint's G
    assert recs[1].param == pytest.approx(0.18) and recs[1].profile == "imagenet-c"
    assert recs[0].param == 0.0 and recs[0].profile == "none"


def test_deterministic_and_prefetch_invariant(ckpts: dict[str, Path], data: EvalData) -> None:
    models = load_checkpoints([ckpts["bn"], ckpts["ln"]])
    a = evaluate_grid(models, data, cfg())
    b = evaluate_grid(models, data, cfg())
    c = evaluate_grid(models, data, cfg(workers=2))
    assert a == b == c


def test_running_mode_invariant_to_batch_size_and_order(ckpts: dict[str, Path], data: EvalData) -> None:
    models = load_checkpoints([ckpts["bn"]])
    runs = [
        counts(evaluate_grid(models, data, cfg(modes=("running",), batch_size=bs, order_seed=o, noises=("gaussian", "impulse"))))
        for bs, o in ((1, 0), (7, 0), (16, 0), (60, 0), (16, 5), (16, None))
    ]
    assert all(r == runs[0] for r in runs), runs


def test_batch_mode_depends_on_batch_size(ckpts: dict[str, Path], data: EvalData) -> None:
    """Sanity check that the invariance above is not vacuous: test-batch statistics do move."""
    models = load_checkpoints([ckpts["bn"]])
    x = normalize(data.clean.images[:32], META)
    model = build_model(models[0].checkpoint).eval()
    small = torch.cat([predict(model, part, "batch") for part in x.split(4)])
    assert not torch.equal(small, predict(model, x, "batch"))


@pytest.mark.parametrize("limit", [48, 60])  # whole batches, and a ragged last batch of 12
def test_ln_local_with_G_equal_batch_equals_bn_batch_stats(tmp_path: Path, limit: int) -> None:
    from lncli.convert import convert_checkpoint

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


def test_single_and_vote_agree_for_one_head(ckpts: dict[str, Path], data: EvalData) -> None:
    recs = evaluate_grid(load_checkpoints([ckpts["bn"]]), data, cfg(modes=("single", "vote")))
    single = [r.correct for r in recs if r.mode == "single"]
    vote = [r.correct for r in recs if r.mode == "vote"]
    assert single == vote
    assert {r.heads for r in recs if r.mode == "vote"} == {"vote"}
    assert {r.group_size for r in recs} == {1}



def test_majority_mode_end_to_end(ckpts: dict[str, Path], data: EvalData) -> None:
    """``majority``: single-image statistics, each head votes its argmax, ties to the lowest class.
    The clean count equals a numpy ``bincount().argmax()`` reference over the heads' predictions
    (single-image statistics do not depend on batching, so the reference runs on the whole set)."""
    models = load_checkpoints([ckpts["ln"]])
    recs = evaluate_grid(models, data, cfg(modes=("majority",)))
    assert [(r.mode, r.noise, r.severity) for r in recs] == [("majority", CLEAN, 0), ("majority", "gaussian", 3)]
    assert {r.heads for r in recs} == {"majority"} and {r.group_size for r in recs} == {1}
    model = build_model(models[0].checkpoint).eval()
    layers = [m for m in model.modules() if isinstance(m, LocalNorm2d)]
    x = normalize(data.clean.images, META)
    per_head = []
    with torch.no_grad():
        for h in range(2):  # the checkpoint's two heads
            for layer in layers:
                layer.test_stats, layer.force_head = "single", h
            per_head.append(model(x).argmax(1).numpy())
    votes = np.stack(per_head)  # (H, N)
    preds = np.array([np.bincount(col).argmax() for col in votes.T])
    assert (votes[0] != votes[1]).any(), "the heads disagree somewhere, so ties are exercised"
    assert recs[0].correct == int((preds == data.clean.labels.numpy()).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_position_heads_depend_on_order_mean_heads_do_not(tmp_path: Path, seed: int) -> None:
    """Running statistics isolate the head effect: only the head choice can depend on position."""
    ln = load_checkpoints([make_ln(tmp_path / "ln.pt", seed=seed, group_size=4, num_heads=2)])[0]
    model = build_model(ln.checkpoint).eval()
    x = normalize(load_dataset("synthetic", "test", limit=16).images, META)  # 4 groups of 4 -> heads 0,1,0,1
    perm = torch.roll(torch.arange(16), 4)  # every image moves to a group with the other head
    for heads, should_commute in (("mean", True), ("position", False)):
        base = scores(model, x, "running", heads=heads, group_size=4)
        moved = scores(model, x[perm], "running", heads=heads, group_size=4)
        err = (moved - base[perm]).abs().max().item()
        assert (err < 1e-5) is should_commute, f"{heads}: max |moved - base[perm]| = {err:.3g}"
    # ...and at the grid level the mean-head counts ignore the order seed.
    d = EvalData.from_imageset(load_dataset("synthetic", "test", limit=40))
    by_order = [
        counts(evaluate_grid([ln], d, cfg(modes=("running",), heads="mean", batch_size=8, group_size=4, order_seed=o)))
        for o in (0, 1, 2)
    ]
    assert by_order[0] == by_order[1] == by_order[2]


def test_progress_reports_every_image(ckpts: dict[str, Path], data: EvalData) -> None:
    seen: list[tuple[int, int]] = []
    evaluate_grid(load_checkpoints([ckpts["bn"]]), data, cfg(), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (LIMIT * 2 * 2, LIMIT * 2 * 2)  # images x cells x columns
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"modes": ("local",), "group_size": 5}, "not a multiple of the group size 5"),
        ({"batch_size": 0}, "--batch-size must be >= 1"),
        ({"group_size": 0}, "--group-size must be >= 1"),
        ({"modes": ("bogus",)}, "unknown mode 'bogus'"),
        ({"heads": "vote"}, "unknown heads"),
        ({"noises": ("nope",)}, "unknown noise 'nope'"),
        ({"severities": (0, 6)}, "severity"),
        ({"profile": "nope"}, "unknown profile"),
    ],
)
def test_bad_settings_raise_one_line(ckpts: dict[str, Path], data: EvalData, kw: dict, msg: str) -> None:
    with pytest.raises(LncliError, match=msg) as info:
        evaluate_grid(load_checkpoints([ckpts["bn"]]), data, cfg(**kw))
    assert "\n" not in str(info.value)


def test_paper_profile_aliases_are_recorded(ckpts: dict[str, Path], data: EvalData) -> None:
    recs = evaluate_grid(load_checkpoints([ckpts["bn"]]), data, cfg(modes=("running",), noises=("shot",), profile="paper"))
    assert [(r.noise, r.profile) for r in recs] == [(CLEAN, "none"), ("poisson", "paper")]


def test_cifar10c_files_replace_generated_noise(tmp_path: Path) -> None:
    import numpy as np

    n = 24
    rng = np.random.default_rng(0)
    c10c = tmp_path / "CIFAR-10-C"
    c10c.mkdir()
    np.save(c10c / "gaussian_noise.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    np.save(c10c / "labels.npy", np.tile(rng.integers(0, 10, n), 5).astype(np.int64))
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=10, in_channels=3)
    ckpt = checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=NormSpec("batchnorm"), data=DATASETS["cifar10"])
    save_checkpoint(ckpt, tmp_path / "c10.pt")
    models = load_checkpoints([tmp_path / "c10.pt"])
    d = resolve_data(f"cifar10c:{c10c}", models, limit=20)
    if d.clean is not None:
        pytest.skip("a real CIFAR-10 test set is installed here; its labels do not match the fake files")
    recs = evaluate_grid(models, d, cfg(modes=("running",), severities=(0, 1, 5), batch_size=8))
    assert [(r.noise, r.severity, r.profile, r.param, r.n) for r in recs] == [
        ("gaussian", 1, "cifar10c-files", None, 20), ("gaussian", 5, "cifar10c-files", None, 20)
    ]  # no clean row without the CIFAR-10 test set
    assert recs[0].data == "cifar10-c"
    with pytest.raises(LncliError, match="not found"):
        evaluate_grid(models, d, cfg(modes=("running",), noises=("shot",), severities=(1,), batch_size=8))
    with pytest.raises(DataError, match="not a directory"):
        resolve_data(f"cifar10c:{tmp_path / 'nope'}", models)


# ---------------------------------------------------------------------------
# distributed: 2 CPU processes (gloo) give the single-process counts
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dist_worker(rank: int, world: int, port: int, paths: list[str], conf: EvalConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0")
    torch.set_num_threads(1)
    from lncli.distributed import cleanup, init_distributed

    init_distributed(torch.device("cpu"))
    try:
        d = EvalData.from_imageset(load_dataset("synthetic", "test", limit=LIMIT))
        recs = evaluate_grid(load_checkpoints(paths), d, conf)
        torch.save([r.to_dict() for r in recs], f"{out}.{rank}")
    finally:
        cleanup()


def test_two_process_gloo_sharding_matches_single_process(ckpts: dict[str, Path], data: EvalData, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    paths = [str(ckpts["bn"]), str(ckpts["ln"])]
    conf = cfg(modes=None, noises=("gaussian", "impulse"), severities=(0, 4))
    single = evaluate_grid(load_checkpoints(paths), data, conf)
    out = str(tmp_path / "recs")
    mp.spawn(_dist_worker, args=(2, _free_port(), paths, conf, out), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert [(g["correct"], g["n"]) for g in got] == [(r.correct, r.n) for r in single]
        assert {g["world_size"] for g in got} == {2}


# ---------------------------------------------------------------------------
# the paper's dataset-level min-max rescale
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("noise, severity", [("gaussian", 5), ("poisson", 3), ("dropout", 4)])
def test_paper_rescale_matches_whole_set_reference(ckpts: dict[str, Path], data: EvalData, noise: str, severity: int) -> None:
    """Batched evaluation with --rescale equals rescaling the whole noisy set at once (corruptions.rescale_minmax)."""
    from lncli.checkpoint import load_checkpoint
    from lncli.corruptions import corrupt, rescale_minmax

    config = cfg(profile="paper", noises=(noise,), severities=(severity,), modes=("running",), rescale=True)
    (rec,) = evaluate_grid(load_checkpoints([ckpts["bn"]]), data, config)
    images, labels = data.clean.images, data.clean.labels
    noisy = corrupt(images.float() / 255.0, noise, severity, seed=0, profile="paper")  # unclipped floats
    x = rescale_minmax(noisy, reference=images)
    model = build_model(load_checkpoint(ckpts["bn"])).eval()
    with torch.inference_mode():
        expected = int((model(normalize(x, META)).argmax(1) == labels).sum())
    assert rec.rescale and rec.profile == "paper" and rec.rescale_range == "test"
    assert rec.correct == expected, f"batched rescale {rec.correct} != whole-set reference {expected}"


def test_paper_rescale_changes_the_input_and_needs_the_paper_profile(ckpts: dict[str, Path], data: EvalData) -> None:
    models = load_checkpoints([ckpts["bn"]])
    base = dict(profile="paper", noises=("gaussian",), severities=(0, 5), modes=("running",))
    plain, scaled = (evaluate_grid(models, data, cfg(**base, rescale=r)) for r in (False, True))
    assert [r.rescale for r in scaled] == [False, True]  # the clean row is never rescaled
    assert [r.rescale_range for r in scaled] == [None, "test"]  # no training split was given
    assert {r.rescale_range for r in plain} == {None}
    assert plain[0].correct == scaled[0].correct
    with pytest.raises(LncliError, match="--profile paper"):
        evaluate_grid(models, data, cfg(rescale=True))


def _spy_batches(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Record every batch evaluate_grid feeds the models (it normalises each batch once, through lncli.data)."""
    import lncli.data

    seen: list[torch.Tensor] = []
    real = lncli.data.normalize

    def spy(images: torch.Tensor, meta: object) -> torch.Tensor:
        seen.append(images.clone())
        return real(images, meta)  # type: ignore[arg-type]

    monkeypatch.setattr(lncli.data, "normalize", spy)
    return seen


def _minmax_reference(images: torch.Tensor, noise: str, severity: int, seed: int, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    """The authors' rescale written out in float64 on the whole set: each channel's noisy [min, max] -> [lo, hi]."""
    from lncli.corruptions import corrupt

    noisy = corrupt(images.float() / 255.0, noise, severity, seed=seed, profile="paper").double().numpy()  # unclipped
    nlo, nhi = noisy.min(axis=(0, 2, 3), keepdims=True), noisy.max(axis=(0, 2, 3), keepdims=True)  # (1, C, 1, 1)
    lo, hi = lo.reshape(1, -1, 1, 1), hi.reshape(1, -1, 1, 1)
    out = (noisy - nlo) / (nhi - nlo) * (hi - lo) + lo
    return torch.from_numpy(np.clip(out, 0.0, 1.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noise, severity", [("gaussian", 5), ("poisson", 2), ("dropout", 4)])
def test_paper_rescale_maps_onto_the_training_range(
    ckpts: dict[str, Path], data: EvalData, monkeypatch: pytest.MonkeyPatch, noise: str, severity: int, seed: int
) -> None:
    """With a training split whose per-channel range differs from the test set's, the noisy batches are the
    whole noisy test set mapped onto the TRAINING range (the authors' protocol), and the records say so."""
    train = load_dataset("synthetic", "train").images.numpy()  # (N, 3, 32, 32), every channel spans 0..255
    train = (train // 2 + np.array([10, 40, 90], dtype=np.uint8)[None, :, None, None]).astype(np.uint8)  # 10..137, 40..167, 90..217
    lo, hi = train.min(axis=(0, 2, 3)) / 255.0, train.max(axis=(0, 2, 3)) / 255.0  # float64, computed here
    assert not np.allclose(lo, 0.0) and not np.allclose(hi, 1.0)  # differs from the test set's [0, 1]
    with_train = EvalData.from_imageset(data.clean, train_range=(torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)))
    batches = _spy_batches(monkeypatch)
    config = cfg(profile="paper", noises=(noise,), severities=(severity,), modes=("running",), rescale=True, seed=seed, order_seed=None)
    (rec,) = evaluate_grid(load_checkpoints([ckpts["bn"]]), with_train, config)
    got = torch.cat(batches).double()  # dataset order (order_seed None), the ragged last batch included
    expected = _minmax_reference(data.clean.images, noise, severity, seed, lo, hi)
    err = (got - expected).abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=f"max error {err:.3g} against the training-range reference")
    onto_test = _minmax_reference(data.clean.images, noise, severity, seed, np.zeros(3), np.ones(3))
    assert (got - onto_test).abs().max().item() > 0.05  # the reference range really changed the input
    assert rec.rescale and rec.rescale_range == "train" and rec.n == LIMIT


def test_train_range_must_match_the_channels(data: EvalData) -> None:
    with pytest.raises(LncliError, match="train_range"):
        EvalData.from_imageset(data.clean, train_range=(torch.zeros(1), torch.ones(1)))  # 3-channel test set
    with pytest.raises(LncliError, match="train_range"):
        EvalData.from_imageset(data.clean, train_range=(torch.zeros(3), torch.ones(2)))


def test_image_range_streams_the_whole_set() -> None:
    for seed in range(3):
        x = torch.randint(3, 250, (37, 2, 5, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
        lo, hi = image_range(x.split(8))
        arr = x.numpy().astype(np.float64) / 255.0
        torch.testing.assert_close(lo.double(), torch.from_numpy(arr.min(axis=(0, 2, 3))), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(hi.double(), torch.from_numpy(arr.max(axis=(0, 2, 3))), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="at least one batch"):
        image_range([])


@pytest.fixture
def fmnist_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Fashion-MNIST folder whose train split spans 10..200 and whose test split spans 0..255,
    with the user's cache, $LNCLI_DATA and the system copy out of reach."""
    from test_data import _write_idx

    import lncli.data

    monkeypatch.delenv("LNCLI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(lncli.data, "SYSTEM_FASHION_MNIST_DIRS", (tmp_path / "no-system-copy",))
    rng = np.random.default_rng(0)
    folder = tmp_path / "fmnist"
    for prefix, n, (lo, hi) in (("train", 50, (10, 200)), ("t10k", 40, (0, 255))):
        images = rng.integers(lo, hi + 1, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, :2] = (lo, hi)  # both ends present
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=(n,), dtype=np.uint8))
    return folder


def _fmnist_ckpt(path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=10, in_channels=1).eval()
    save_checkpoint(checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=NormSpec("batchnorm"), data=DATASETS["fashion-mnist"]), path)
    return path


def test_resolve_data_reads_the_training_range_and_falls_back_to_the_test_set(fmnist_dir: Path, tmp_path: Path) -> None:
    models = load_checkpoints([_fmnist_ckpt(tmp_path / "f.pt")])
    plain = resolve_data("fashion-mnist", models, data_dir=fmnist_dir)
    assert plain.train_range is None  # only read when asked for (it costs a pass over the training split)
    data = resolve_data("fashion-mnist", models, data_dir=fmnist_dir, with_train_range=True)
    assert data.train_range is not None
    assert [t.tolist() for t in data.train_range] == [[pytest.approx(10 / 255, rel=1e-6)], [pytest.approx(200 / 255, rel=1e-6)]]
    config = cfg(profile="paper", noises=("gaussian",), severities=(0, 4), modes=("running",), rescale=True)
    assert [r.rescale_range for r in evaluate_grid(models, data, config)] == [None, "train"]
    for f in fmnist_dir.glob("train-*"):
        f.unlink()
    data = resolve_data("fashion-mnist", models, data_dir=fmnist_dir, with_train_range=True)
    assert data.train_range is None and len(data.clean) == 40
    assert [r.rescale_range for r in evaluate_grid(models, data, config)] == [None, "test"]


def test_cli_rescale_records_the_training_range(fmnist_dir: Path, tmp_path: Path) -> None:
    import csv

    from typer.testing import CliRunner

    from lncli.cli import app

    ckpt = _fmnist_ckpt(tmp_path / "f.pt")
    out = tmp_path / "r.csv"
    args = ["evaluate", str(ckpt), "--data-dir", str(fmnist_dir), "--profile", "paper", "--rescale", "--noise", "gaussian",
            "--severity", "0,5", "--mode", "running", "--device", "cpu", "--csv", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["rescale"], r["rescale_range"]) for r in rows] == [("False", ""), ("True", "train")]
