"""Regenerate examples/ci/baseline.json: the check of sample_configs/ci_robustness.yaml, run without its gate.

``make baseline`` runs this. The check's config is the one source of what is evaluated: this script reads it
and runs the same evaluation through ``lncli.evaluate`` (the config file's keys are its keywords), leaving out
only the comparison with the old baseline and the reports, then writes the run's JSON as the new baseline.
Accept a new baseline only when the change that moved it is meant to.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

import lncli

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "sample_configs" / "ci_robustness.yaml"
BASELINE = ROOT / "examples" / "ci" / "baseline.json"

NOT_FOR_THE_BASELINE = ("compare", "max_regression", "significance", "junit", "markdown", "csv", "json")
"""The gate against the old baseline and the check's reports: the baseline run is the evaluation alone."""


def main() -> int:
    os.chdir(ROOT)  # the config's paths are relative to the repository root, as for the check itself
    options = yaml.safe_load(CONFIG.read_text())
    models = options.pop("checkpoints")
    data = options.pop("data")
    for key in NOT_FOR_THE_BASELINE:
        options.pop(key, None)
    result = lncli.evaluate(models, data, json=BASELINE, **options)
    print(f"wrote {BASELINE.relative_to(ROOT)}: {len(result.records)} cells", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
