"""Shared test set-up.

In CI (``CI=true``) or with ``ALBATROSS_FAIL_ON_SKIP=1`` a skipped test fails: a missing server
or browser must never pass silently there.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

pytest_plugins = ["tests.infra_fixtures"]


def _skips_fail() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "ALBATROSS_FAIL_ON_SKIP", "") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _skips_fail() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
