"""``--junit PATH``: the CI gate as JUnit XML, which GitHub, GitLab and Jenkins show per test.

One ``testcase`` per (column, cell) that a bound or the baseline comparison covers
(:func:`lncli.report.checks.cases`), named ``<checkpoint>:<mode>/<noise>/<severity>`` with the
checkpoint's label as ``classname``. A failing case carries a ``failure`` whose message is the
failure line and whose text gives, per failed bound, the measured value, its interval and the bound
(or the baseline, delta, p-value and test); every case's ``system-out`` lists all its checks. The
layout is the common subset of the JUnit schemas (Jenkins', Ant's) that ``junitparser`` and
``xml.etree`` read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from lncli.io import atomic_write
from lncli.report.checks import Check, cases

__all__ = ["SUITE_NAME", "junit_xml", "write_junit"]

SUITE_NAME = "lncli evaluate"
"""The name of the test suite (and of the ``testsuites`` root)."""


def junit_xml(checks: Sequence[Check], *, properties: Mapping[str, object] | None = None) -> str:
    """The JUnit XML document of the checks.

    Args:
        checks: every check of the run (passed or not).
        properties: facts about the run shown with the suite (data, n, seeds, baseline...).

    Returns:
        The XML text, with its declaration.
    """
    groups = cases(checks)
    failures = sum(not c.passed for c in groups)
    counts = {"tests": str(len(groups)), "failures": str(failures), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **counts})
    if properties:
        props = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(props, "property", {"name": str(key), "value": "" if value is None else str(value)})
    for case in groups:
        element = ET.SubElement(suite, "testcase", {"classname": case.classname, "name": case.name})
        failed = case.failures
        if failed:
            failure = ET.SubElement(
                element, "failure", {"message": "; ".join(c.message for c in failed), "type": "RobustnessCheck"}
            )
            failure.text = "\n".join(f"{c.message}\n  {c.detail}" for c in failed)
        out = ET.SubElement(element, "system-out")
        out.text = "\n".join(f"{'PASS' if c.passed else 'FAIL'} {c.detail}" for c in case.checks)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(checks: Sequence[Check], path: str | Path, *, properties: Mapping[str, object] | None = None) -> None:
    """Write :func:`junit_xml` to ``path`` atomically (UTF-8).

    Args:
        checks: every check of the run.
        path: the ``.xml`` file (checked up front by the CLI).
        properties: see :func:`junit_xml`.
    """
    text = junit_xml(checks, properties=properties)
    with atomic_write(path, "w") as fh:
        fh.write(text)
