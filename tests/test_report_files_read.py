"""lncli.report.read_json (the --compare baseline) and lncli.records.record_from_json: a run's JSON read back."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from report_helpers import sweep

from lncli.errors import LncliError
from lncli.records import pack_hits, record_from_json
from lncli.report import read_json, write_json
from lncli.report.files import EVAL_FORMAT, EVAL_FORMAT_VERSION


@pytest.mark.parametrize("seed", range(3))
def test_write_then_read_gives_the_same_records(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    recs = [dataclasses.replace(r, hits=pack_hits(rng.random(r.n) < 0.5)) for r in sweep()]
    recs[1] = dataclasses.replace(recs[1], n=0, correct=0, accuracy=math.nan, hits=None)  # an empty cell: null
    path = tmp_path / "r.json"
    write_json(recs, path, config={"seed": seed})
    run = read_json(path)
    assert run.config == {"seed": seed}
    assert math.isnan(run.records[1].accuracy)
    assert run.records[:1] + run.records[2:] == recs[:1] + recs[2:]


def test_a_field_the_file_lacks_takes_its_default_and_an_unknown_one_is_refused() -> None:
    entry = sweep()[0].to_dict()
    for newer in ("rescale", "rescale_range", "hits"):
        del entry[newer]  # as written before these fields existed
    assert record_from_json(entry) == sweep()[0]
    with pytest.raises(ValueError, match="unknown record field 'colour'"):
        record_from_json({**entry, "colour": "blue"})
    with pytest.raises(ValueError, match="lacks the field 'n'"):
        record_from_json({k: v for k, v in entry.items() if k != "n"})
    with pytest.raises(ValueError, match="not a count"):
        record_from_json({**entry, "correct": -1})


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (None, "no such file"),
        ("", "is not a JSON file"),
        ("[1, 2]", "is not the JSON of lncli evaluate"),
        (json.dumps({"format": EVAL_FORMAT, "format_version": EVAL_FORMAT_VERSION + 1}), "format version 2"),
        (json.dumps({"format": EVAL_FORMAT, "format_version": "1"}), "format version '1'"),
        (json.dumps({"format": EVAL_FORMAT, "format_version": 1, "records": {}}), "not a list of records"),
        (json.dumps({"format": EVAL_FORMAT, "format_version": 1, "records": [{"n": 1}]}), "record 1: record lacks"),
    ],
)
def test_bad_baselines_are_one_line(tmp_path: Path, body: str | None, needle: str) -> None:
    path = tmp_path / "b.json"
    if body is not None:
        path.write_text(body)
    with pytest.raises(LncliError, match="--compare .*b.json") as info:
        read_json(path)
    assert needle in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(LncliError, match="is a folder"):
        read_json(tmp_path)
