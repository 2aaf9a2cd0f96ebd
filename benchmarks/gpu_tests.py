"""The GPU-marked tests, recorded as ``tests.json`` / ``tests.md`` like every part of ``gpu_suite.sh``.

Runs ``pytest -m gpu tests`` in this process and notes each test's outcome (a test that fails in its set-up
counts as an error). Exits with pytest's status, so a failing GPU test fails the suite's part.

    python benchmarks/gpu_tests.py --out benchmarks/results/gpu
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from _report import write_report


class Outcomes:
    """A pytest plugin that keeps one outcome per test: passed, failed, skipped or error."""

    def __init__(self) -> None:
        self.by_test: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            outcome = "error" if report.failed and report.when != "call" else report.outcome
            self.by_test.setdefault(report.nodeid, outcome)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="also write tests.md and tests.json into this folder")
    args = parser.parse_args()
    outcomes = Outcomes()
    status = int(pytest.main(["-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"], plugins=[outcomes]))
    counts = Counter(outcomes.by_test.values())
    table = "\n".join([
        f"`pytest -m gpu tests`: exit status {status}",
        "",
        "| test | outcome |",
        "|---|---|",
        *(f"| {test} | {outcome} |" for test, outcome in sorted(outcomes.by_test.items())),
    ])
    figures = dict(exit_status=status, tests=outcomes.by_test,
                   **{outcome: counts[outcome] for outcome in ("passed", "failed", "skipped", "error")})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    write_report("tests", table, device=device, settings={"marker": "gpu"}, figures=figures, out=args.out)
    sys.exit(status)


if __name__ == "__main__":
    main()
