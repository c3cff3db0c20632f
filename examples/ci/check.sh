#!/bin/sh
# The robustness check of sample_configs/ci_robustness.yaml, for any CI system (or by hand), on CPU.
#
#   examples/ci/check.sh                                   # from the repository root
#   CONFIG=my_check.yaml examples/ci/check.sh --limit 200  # another config; any lncli evaluate flag wins over it
#   LNCLI="python -m lncli" examples/ci/check.sh           # lncli not on PATH
#
# The config says what is evaluated, the bounds, the baseline to compare with and where the reports go
# (ci_reports/: junit.xml, summary.md, results.csv, results.json); collect that folder as the job's artifacts
# (GitLab: `artifacts: reports: junit: ci_reports/junit.xml`; Jenkins: `junit 'ci_reports/junit.xml'`).
# Exit code: lncli's. 0 every check passed; 1 a bound or the baseline gate failed (each failing cell is
# named on stderr); 2 bad input or settings that do not match the baseline's (one line on stderr).
set -u

LNCLI=${LNCLI:-lncli}
CONFIG=${CONFIG:-sample_configs/ci_robustness.yaml}

status=0
# $LNCLI is split into words on purpose ("python -m lncli").
$LNCLI evaluate --config "$CONFIG" "$@" || status=$?
case $status in
  0) echo "robustness check passed" >&2 ;;
  1) echo "robustness check FAILED (see the FAIL lines above and the reports)" >&2 ;;
  *) echo "robustness check could not run (exit $status)" >&2 ;;
esac
exit "$status"
