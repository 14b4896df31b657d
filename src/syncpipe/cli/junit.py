"""JUnit XML for CI test reporters, one test case per verify check."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncpipe.services.verify import VerifyResult


def verify_to_junit(result: VerifyResult) -> str:
    """Render verify checks as a JUnit XML document (failures, skips, warnings as output)."""
    counts = Counter(c.status for c in result.checks)
    suite = ET.Element(
        "testsuite",
        name=f"syncpipe verify ({result.env})",
        tests=str(len(result.checks)),
        failures=str(counts["fail"] + (counts["warn"] if result.fail_on == "warn" else 0)),
        errors="0",
        skipped=str(counts["skip"]),
        timestamp=result.checked_at,
    )
    for check in result.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"syncpipe.{check.category}.{check.check}",
            name=check.object,
        )
        failing = check.status == "fail" or (check.status == "warn" and result.fail_on == "warn")
        if failing:
            failure = ET.SubElement(case, "failure", message=check.message, type=check.check)
            failure.text = "\n".join(
                part
                for part in (
                    check.message,
                    f"remediation: {check.remediation}" if check.remediation else "",
                    f"expected:\n{check.expected}" if check.expected else "",
                    f"actual:\n{check.actual}" if check.actual else "",
                )
                if part
            )
        elif check.status == "skip":
            ET.SubElement(case, "skipped", message=check.message)
        elif check.status == "warn":
            out = ET.SubElement(case, "system-out")
            out.text = f"warning: {check.message}"
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


def error_to_junit(env: str, exc: BaseException) -> str:
    """One failing test case: verify could not check the database (it could not connect, ...)."""
    from datetime import UTC, datetime

    from syncpipe.core.redact import redact

    message = redact(str(exc))
    suite = ET.Element(
        "testsuite",
        name=f"syncpipe verify ({env})",
        tests="1",
        failures="1",
        errors="0",
        skipped="0",
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    case = ET.SubElement(suite, "testcase", classname="syncpipe.verify", name="database reachable")
    failure = ET.SubElement(case, "failure", message=message, type=type(exc).__name__)
    failure.text = message
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")
