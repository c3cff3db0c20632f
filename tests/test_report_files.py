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


@pytest.mark.parametrize("which", ["sizes", "mixed"])
def test_plot_against_batch_size(tmp_path: Path, which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several batch sizes (or a mixed stream): accuracy vs batch size, a panel per cell."""
    from report_helpers import mixed_sweep, sized_sweep

    from lncli.report import files

    panels: list[tuple[str, list[float]]] = []
    real = files._batch_size_figure

    def watching(records, plt):  # type: ignore[no-untyped-def]
        fig = real(records, plt)
        for ax in fig.axes:
            if ax.get_visible():
                panels.append((ax.get_title(), [float(x) for x in ax.lines[0].get_xdata()]))
        return fig

    monkeypatch.setattr(files, "_batch_size_figure", watching)
    path = tmp_path / "acc.png"
    plot_accuracy(sized_sweep() if which == "sizes" else mixed_sweep(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if which == "sizes":
        assert [t for t, _ in panels] == ["clean"] + [f"{n} {s}" for n in ("gaussian", "impulse") for s in (1, 2, 3)]
        assert all(xs == [1.0, 16.0, 128.0] for _, xs in panels)
    else:
        assert panels == [("mixed", [64.0])]


def test_csv_and_json_carry_a_mixed_severity(tmp_path: Path) -> None:
    from report_helpers import mixed_sweep

    write_csv(mixed_sweep(), tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["noise"], r["severity"], r["mix"], r["param"]) for r in rows} == {("mixed", "mixed", "True", "")}
    write_json(mixed_sweep(), tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {(r["severity"], r["order"]) for r in doc["records"]} == {("mixed", "shuffled")}
