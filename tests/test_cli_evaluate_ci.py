"""``lncli evaluate`` as a CI check: --config files, --junit, --markdown and --compare, end to end.

Tiny synthetic checkpoints (conftest.py) on 40 synthetic images, through Typer's CliRunner.
"""

from __future__ import annotations

import base64
import csv
import itertools
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lncli.cli import app
from lncli.cli.app import ConfigFile, option_sources
from lncli.records import COMPARISON_FIELDS, RECORD_FIELDS, pack_hits, unpack_hits

runner = CliRunner()
N = 40
FAST = ["--data", "synthetic", "--limit", str(N), "--batch-size", "16", "--device", "cpu"]
GRID = ["--noise", "gaussian,impulse", "--severity", "0,2,5"]


@pytest.fixture
def ckpts(eval_ckpts: dict[str, Path]) -> dict[str, Path]:
    return eval_ckpts


def invoke(*args: str | Path):
    return runner.invoke(app, ["evaluate", *map(str, args)], env={"COLUMNS": "160", "TERM": "dumb"})


def records_of(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["records"]


def one_error_line(res: Any) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.stderr, res.stderr
    return lines[0]


# --------------------------------------------------------------------------- --config


def test_a_config_file_equals_the_same_flags(ckpts: dict[str, Path], tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    res = invoke(ckpts["bn"], ckpts["ln"], *FAST, *GRID, "--seed", "3", "--fail-under", "0.05", "--json", flags)
    assert res.exit_code == 0, res.stderr
    cfg = tmp_path / "check.yaml"
    cfg.write_text(
        "# lists as YAML lists or as the option's comma string\n"
        f"checkpoints: [{ckpts['bn']}, {ckpts['ln']}]\n"
        "data: synthetic\nlimit: 40\nbatch_size: 16\ndevice: cpu\n"
        "noise: [gaussian, impulse]\nseverity: 0,2,5\nseed: 3\nfail_under: 0.05\n"
        f"json: {tmp_path / 'file.json'}\n"
    )
    res = invoke("--config", cfg)
    assert res.exit_code == 0, res.stderr
    assert records_of(tmp_path / "file.json") == records_of(flags)  # identical records, hits included
    a, b = (json.loads(p.read_text())["config"] for p in (flags, tmp_path / "file.json"))
    assert {k: v for k, v in a["options"].items() if k != "json"} == {
        k: v for k, v in b["options"].items() if k != "json"
    }
    assert b["config_file"] == str(cfg) and a["config_file"] is None
    assert set(b["from_file"]) == {"checkpoints", "data", "limit", "batch_size", "device", "noise", "severity",
                                   "seed", "fail_under", "json"}  # fmt: skip
    assert b["options"]["fail_under"] == ["0.05"] and b["options"]["noise"] == "gaussian,impulse"


def test_flags_win_over_the_file_and_the_json_says_which_came_from_where(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"checkpoints: {ckpts['bn']}\nnoise: gaussian\nseverity: [0, 2]\nmode: running\nlimit: 16\n")
    out = tmp_path / "r.json"
    res = invoke("--config", cfg, "--severity", "0,5", "--data", "synthetic", "--device", "cpu", "--json", out)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(out.read_text())
    assert sorted({r["severity"] for r in doc["records"]}) == [0, 5] and {r["n"] for r in doc["records"]} == {16}
    assert "severity" in doc["config"]["from_command_line"] and "severity" not in doc["config"]["from_file"]
    assert {"noise", "mode", "limit", "checkpoints"} <= set(doc["config"]["from_file"])
    other = tmp_path / "other.pt"
    other.write_bytes(ckpts["ln"].read_bytes())
    res = invoke(other, "--config", cfg, "--data", "synthetic", "--device", "cpu", "--json", out)  # CKPT wins too
    assert res.exit_code == 0 and {r["checkpoint"] for r in records_of(out)} == {str(other)}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("nosie: gaussian\n", "unknown config key 'nosie' in c.yaml (did you mean 'noise'?)"),
        ("fail-under: 0.5\n", "did you mean 'fail_under'?"),
        ("batch_size: many\n", "expected integers, e.g. 128 or 1,16,128 (config key 'batch_size' in c.yaml)"),
        ("download: maybe\n", "config key 'download' in c.yaml: 'maybe' is not valid; expected true or false"),
        ("limit: {a: 1}\n", "config key 'limit' in c.yaml"),
        ("profile: nope\n", "config key 'profile' in c.yaml"),
        ("config: other.yaml\n", "unknown config key 'config'"),
        ("- just\n- a list\n", "must be a mapping"),
        ("noise: [gaussian\n", "not valid YAML"),
        ("severity: 9\n", "(config key 'severity' in c.yaml)"),  # refused by the flag's own parser
        ("noise: fog_x\n", "unknown noise 'fog_x'"),
        ("max_drop: 2\n", "--max-drop must be in [0, 1], got 2.0 (config key 'max_drop' in c.yaml)"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(
    ckpts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text(f"checkpoints: [{ckpts['bn']}]\ndata: synthetic\ndevice: cpu\n{body}")
    if body.startswith("-"):
        Path("c.yaml").write_text(body)
    line = one_error_line(invoke("--config", "c.yaml"))
    assert needle in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_a_flag_error_is_not_blamed_on_the_file(ckpts: dict[str, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("severity: 0,1\n")
    line = one_error_line(invoke(ckpts["bn"], "--config", cfg, "--severity", "9", *FAST))
    assert "--severity '9'" in line and "config key" not in line


def test_a_new_option_of_a_command_is_a_config_key_with_no_further_code(tmp_path: Path) -> None:
    toy = typer.Typer()
    seen: dict[str, Any] = {}

    @toy.command()
    def check(
        ctx: typer.Context,
        names: Annotated[list[str], typer.Argument()],
        brand_new: Annotated[int, typer.Option(help="an option no config code knows")] = 1,
        tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
        verbose: Annotated[bool, typer.Option("--verbose")] = False,
        config_file: ConfigFile = None,
    ) -> None:
        seen.update(option_sources(ctx), names=names, brand_new=brand_new, tag=tag, verbose=verbose)

    cfg = tmp_path / "c.yaml"
    cfg.write_text("names: [a, b]\nbrand_new: 7\ntag: [x, y]\nverbose: true\n")
    res = runner.invoke(toy, ["--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert seen["names"] == ["a", "b"] and seen["brand_new"] == 7 and seen["tag"] == ["x", "y"] and seen["verbose"]
    assert sorted(seen["from_file"]) == ["brand_new", "names", "tag", "verbose"] and seen["from_command_line"] == []
    res = runner.invoke(toy, ["--config", str(cfg), "--brand-new", "9", "c"])
    assert res.exit_code == 0 and seen["brand_new"] == 9 and seen["names"] == ["c"]
    assert sorted(seen["from_command_line"]) == ["brand_new", "names"]
    cfg.write_text("brand_new: seven\n")
    res = runner.invoke(toy, ["z", "--config", str(cfg)])
    assert res.exit_code == 2 and "config key 'brand_new'" in res.output


# --------------------------------------------------------------------------- --junit / --markdown


def _expected_cases(csv_path: Path, bound_cell: tuple[str, int], bound: float, max_drop: float) -> dict[str, bool]:
    """{test case name: failed}, from the CSV's records: a --fail-under on one cell and --max-drop on the rest."""
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    label = {"bn.pt": "bn", "ln.pt": "ln"}
    out: dict[str, bool] = {}
    clean = {(r["checkpoint"], r["mode"]): float(r["accuracy"]) for r in rows if r["noise"] == "clean"}
    for r in rows:
        name = f"{label[Path(r['checkpoint']).name]}:{r['mode']}/{r['noise']}/{r['severity']}"
        acc, failed, covered = float(r["accuracy"]), False, False
        if (r["noise"], int(r["severity"])) == bound_cell:
            covered, failed = True, acc < bound
        if r["noise"] != "clean":
            covered = True
            failed = failed or clean[(r["checkpoint"], r["mode"])] - acc > max_drop
        if covered:
            out[name] = failed
    return out


def test_junit_has_a_case_per_checked_cell_and_parses(ckpts: dict[str, Path], tmp_path: Path) -> None:
    from junitparser import Failure, JUnitXml

    xml, md, table = tmp_path / "r.xml", tmp_path / "r.md", tmp_path / "r.csv"
    res = invoke(ckpts["bn"], ckpts["ln"], *FAST, *GRID, "--fail-under", "gaussian:5=0.6", "--max-drop", "0.2",
                 "--junit", xml, "--markdown", md, "--csv", table)  # fmt: skip
    want = _expected_cases(table, ("gaussian", 5), 0.6, 0.2)
    assert res.exit_code == (1 if any(want.values()) else 0), res.stderr
    assert 0 < sum(want.values()) < len(want)  # the bounds are chosen so that some cells fail and some pass
    suite = next(iter(JUnitXml.fromfile(str(xml))))
    got = {case.name: any(isinstance(r, Failure) for r in case.result) for case in suite}
    assert got == want
    assert (suite.tests, suite.failures, suite.errors) == (len(want), sum(want.values()), 0)
    root = ET.parse(xml).getroot()  # the standard library reads it too
    cases = root.findall("./testsuite/testcase")
    assert root.tag == "testsuites" and int(root.get("tests", "-1")) == len(cases) == len(want)
    for case in cases:
        assert case.get("classname") in {"bn", "ln"} and case.get("name", "").startswith(case.get("classname", ""))
        failure = case.find("failure")
        if failure is not None:  # the measured value, its interval and the bound
            assert "measured" in (failure.text or "") and "[" in (failure.text or "") and "expected" in failure.text
    text = md.read_text()
    assert f"{sum(want.values())} of {len(want)} checked cells failed" in text
    rows = [line for line in text.splitlines() if line.startswith(("| ❌", "| ✅"))]
    assert (
        rows
        and rows[0].startswith("| ❌")
        and not any(  # failed first
            b.startswith("| ❌") for a, b in itertools.pairwise(rows) if a.startswith("| ✅")
        )
    )


def test_without_bounds_junit_is_empty_and_markdown_lists_the_worst_cells(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    xml, md = tmp_path / "r.xml", tmp_path / "summary"  # no suffix, as $GITHUB_STEP_SUMMARY
    res = invoke(ckpts["bn"], *FAST, *GRID, "--mode", "running", "--junit", xml, "--markdown", md)
    assert res.exit_code == 0, res.stderr
    root = ET.parse(xml).getroot()
    assert root.get("tests") == "0" and root.findall(".//testcase") == []
    accs = [float(line.split("|")[2].split("%")[0]) for line in md.read_text().splitlines() if line.startswith("| `")]
    assert len(accs) == 5 and accs == sorted(accs)


# --------------------------------------------------------------------------- --compare


@pytest.fixture(scope="module")
def baseline(eval_ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "base.json"
    res = invoke(eval_ckpts["bn"], eval_ckpts["ln"], *FAST, *GRID, "--json", out)
    assert res.exit_code == 0, res.stderr
    return out


def test_comparing_a_run_with_itself_passes(ckpts: dict[str, Path], baseline: Path, tmp_path: Path) -> None:
    out, table, xml = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.xml"
    res = invoke(ckpts["bn"], ckpts["ln"], *FAST, *GRID, "--compare", baseline, "--json", out, "--csv", table,
                 "--junit", xml)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "compared with" in res.stdout and "(+0.0)" in res.stdout
    cells = json.loads(out.read_text())["comparison"]["cells"]
    assert len(cells) == 15 and {(c["delta"], c["lost"], c["gained"], c["test"]) for c in cells} == {
        (0.0, 0, 0, "mcnemar")
    }
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RECORD_FIELDS + COMPARISON_FIELDS
    assert all(r["baseline_accuracy"] == r["accuracy"] and float(r["delta"]) == 0.0 for r in rows)
    assert ET.parse(xml).getroot().get("tests") == "15"  # every compared cell is a test case


def _doctor(src: Path, dst: Path, by: float) -> dict[str, int]:
    """The baseline with every accuracy raised by ``by`` (as far as it goes), per-image results flipped to
    match; returns how many images each cell gained, by test case name."""
    doc = json.loads(src.read_text())
    raised = {}
    for r in doc["records"]:
        hits = unpack_hits(r["hits"], r["n"])
        k = min(round(by * r["n"]), int((~hits).sum()))
        hits[np.flatnonzero(~hits)[:k]] = True
        r["hits"], r["correct"] = pack_hits(hits), int(hits.sum())
        r["accuracy"] = r["correct"] / r["n"]
        raised[
            f"{Path(r['checkpoint']).stem}:{r['mode']} {r['noise']} {r['severity']}".replace(" clean 0", " clean")
        ] = k
    dst.write_text(json.dumps(doc))
    return raised


def test_a_doctored_baseline_fails_and_names_the_cells(ckpts: dict[str, Path], baseline: Path, tmp_path: Path) -> None:
    doctored = tmp_path / "doctored.json"
    raised = _doctor(baseline, doctored, 0.2)
    d = 0.1
    # A cell fails when it fell more than D and McNemar (k lost, none gained) gives p = 0.5^k < 0.05.
    want = {cell for cell, k in raised.items() if k / N > d and 0.5**k < 0.05}
    assert want  # the tiny models leave every cell room to rise 8 images: here all of them
    xml = tmp_path / "r.xml"
    res = invoke(ckpts["bn"], ckpts["ln"], *FAST, *GRID, "--compare", doctored, "--max-regression", str(d),
                 "--junit", xml)  # fmt: skip
    assert res.exit_code == 1, res.stderr
    named = {line[len("FAIL ") :].split(":", 2)[0] + ":" + line.split(":")[1] for line in res.stderr.splitlines()}
    assert {n.strip() for n in named} == want
    assert "McNemar, paired" in res.stderr and "fell 20.0 points" in res.stderr
    failures = ET.parse(xml).getroot().findall(".//failure")
    assert len(failures) == len(want) and all(
        "p = " in (f.text or "") and "baseline" in (f.text or "") for f in failures
    )
    # One image more per cell in the baseline: a 2.5-point fall, p = 0.5, inside the noise: passes.
    _doctor(baseline, doctored, 1 / N)
    res = invoke(ckpts["bn"], ckpts["ln"], *FAST, *GRID, "--compare", doctored)
    assert res.exit_code == 0, res.stderr
    assert "(-2.5)" in res.stdout


def test_mismatched_settings_are_refused_before_any_compute(
    ckpts: dict[str, Path], baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: a baseline whose settings differ costs no compute, and nothing is written."""
    import lncli.jobs.evaluate.plan

    def no_compute(*a: object, **k: object) -> None:
        raise AssertionError("evaluated before refusing")

    monkeypatch.setattr(lncli.jobs.evaluate.plan, "run_grid", no_compute)
    out = tmp_path / "r.json"
    res = invoke(ckpts["bn"], ckpts["ln"], *FAST, *GRID, "--seed", "1", "--compare", baseline, "--json", out)
    line = one_error_line(res)
    assert "settings differ from the baseline" in line and "noise_seed 1 here, 0 in the baseline" in line
    assert not out.exists()


def test_other_columns_are_refused_before_any_compute(
    ckpts: dict[str, Path], baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lncli.jobs.evaluate.plan

    def no_compute(*a: object, **k: object) -> None:
        raise AssertionError("evaluated before refusing")

    monkeypatch.setattr(lncli.jobs.evaluate.plan, "run_grid", no_compute)
    line = one_error_line(invoke(ckpts["bn"], *FAST, *GRID, "--compare", baseline))
    assert "the baseline's column ln:local is not in this run" in line
    line = one_error_line(invoke(ckpts["bn"], ckpts["ln"], *FAST, *GRID, "--mode", "running", "--compare", baseline))
    assert "ln:running matches no column of the baseline" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--compare", "missing.json"], "--compare missing.json: no such file"),
        (["--compare", "v2.json"], "format version 2; this lncli reads version 1"),
        (["--compare", "notjson.json"], "is not a JSON file"),
        (["--compare", "other.json"], "is not the JSON of lncli evaluate"),
        (["--compare", "base.json", "--max-regression", "-0.1"], "--max-regression must be in [0, 1]"),
        (["--compare", "base.json", "--significance", "0"], "--significance must be in (0, 1)"),
        (["--compare", "base.json", "--significance", "1.5"], "--significance must be in (0, 1)"),
        (["--max-regression", "0.1"], "--max-regression needs --compare"),
        (["--junit", "r.txt"], "--junit r.txt"),
        (["--junit", "r.xml", "--markdown", "summary"], "are the same file"),  # summary links to r.xml
    ],
)
def test_bad_compare_input_is_refused_before_any_work(
    ckpts: dict[str, Path],
    baseline: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    needle: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    doc = json.loads(baseline.read_text())
    Path("base.json").write_text(json.dumps(doc))
    Path("v2.json").write_text(json.dumps({**doc, "format_version": 2}))
    Path("notjson.json").write_text("{not json")
    Path("other.json").write_text(json.dumps({"format": "something-else"}))
    Path("summary").symlink_to("r.xml")  # a --markdown path (no suffix) that names --junit's file
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_error_line(invoke(ckpts["bn"], *FAST, *GRID, "--json", "out.json", *args))
    assert needle in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_hits_survive_the_json_round_trip(baseline: Path) -> None:
    for r in records_of(baseline):
        hits = unpack_hits(r["hits"], r["n"])
        assert int(hits.sum()) == r["correct"] and base64.b64decode(r["hits"])
