"""Tests for lncli.report.files: the CSV, the JSON and the plot, written atomically (no models needed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from report_helpers import LONG, demo_sweep, sweep

from lncli.errors import LncliError
from lncli.records import JSON_FIELDS, RECORD_FIELDS
from lncli.report import plot_accuracy, write_csv, write_json


def test_csv_long_format(tmp_path: Path) -> None:
    path = tmp_path / "out" / "r.csv"
    write_csv(sweep(), path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(sweep())
    assert tuple(rows[0]) == RECORD_FIELDS
    assert rows[0]["group_size"] == ""  # None -> empty cell
    assert float(rows[1]["accuracy"]) == pytest.approx(sweep()[1].accuracy)
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temp file


def test_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(sweep(), path, config={"batch_size": 64})
    doc = json.loads(path.read_text())
    assert doc["format"] == "lncli-eval" and doc["format_version"] == 1
    assert doc["config"] == {"batch_size": 64}
    assert set(doc["records"][0]) == set(JSON_FIELDS)


def test_plot_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "acc.png"
    plot_accuracy(sweep(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_with_unknown_suffix_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(LncliError, match="cannot write 'txt'") as info:
        plot_accuracy(sweep(), tmp_path / "acc.txt")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "acc.txt").exists()


def test_csv_keeps_the_full_checkpoint_path(tmp_path: Path) -> None:
    write_csv(demo_sweep(), tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as fh:
        assert {row["checkpoint"] for row in csv.DictReader(fh)} == set(LONG)
