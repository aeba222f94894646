"""deploy/compose: valid against the Compose Specification, and shaped as documented."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from tests.deploy.tools import DEPLOY, REPO, load_all, run, tool

COMPOSE = DEPLOY / "compose" / "compose.yaml"
SERVICES = ("gateway", "projector", "notifier")


def compose() -> dict[str, Any]:
    return load_all(COMPOSE.read_text(encoding="utf-8"))[0]


def test_compose_matches_the_compose_spec() -> None:
    checker = tool("check-jsonschema")
    result = run([checker, "--builtin-schema", "vendor.compose-spec", COMPOSE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_is_not_vacuous(tmp_path: Any) -> None:
    checker = tool("check-jsonschema")
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period: 15s",
                                                  "stop_grace_perod: 15s"))
    assert run([checker, "--builtin-schema", "vendor.compose-spec", broken]).returncode != 0


def test_services_start_after_bootstrap_and_healthy_servers() -> None:
    services = compose()["services"]
    assert services["bootstrap"]["restart"] == "no"
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["bootstrap"]["condition"] == "service_completed_successfully"
        assert depends["nats"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert services[name]["restart"] == "unless-stopped"
        assert "healthcheck" in services[name]
        assert "ports" not in services[name], f"{name} is reached through the edge only"
        assert "container_name" not in services[name], f"{name} must stay scalable"
    for name in ("nats", "postgres", "edge"):
        assert "healthcheck" in services[name]


def test_images_are_pinned_and_built_from_cmd() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = service["image"]
        # name:1.2.3[-variant], or name:${VERSION:-1.2.3} for the images built here.
        last = image.rsplit("/", 1)[-1]
        assert re.fullmatch(r"[\w.-]+:(\d[\w.-]*|\$\{\w+:-\d[\w.-]*\})", last), image
        if "build" in service:
            assert service["build"]["dockerfile"] == f"cmd/{name}/Dockerfile"
            assert (REPO / service["build"]["dockerfile"]).is_file()
    assert services["postgres"]["image"].startswith("postgres:18.")


def test_nats_is_durable_and_uses_the_shared_authorization() -> None:
    nats = compose()["services"]["nats"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in nats["volumes"]}
    assert mounts["/etc/nats/auth.conf"] == "../nats/auth.conf"
    assert mounts["/etc/nats/nats.conf"] == "../nats/standalone.conf"
    assert "nats-data" in mounts.values()
    config = (DEPLOY / "nats" / "standalone.conf").read_text()
    assert "sync_interval: always" in config
    assert 'include "auth.conf"' in config
    assert compose()["services"]["postgres"]["volumes"] == [
        "postgres-data:/var/lib/postgresql"]


def test_no_secret_is_written_in_compose() -> None:
    """Every password comes from the .env file; the committed example holds placeholders."""
    text = COMPOSE.read_text(encoding="utf-8")
    for match in re.finditer(r"^\s+([A-Z_]*PASSWORD[A-Z_]*):\s*(\S+)", text, re.MULTILINE):
        assert match.group(2).startswith(("${", '"${')), match.group(0)
    for match in re.finditer(r"//(\w+):([^@]+)@", text):
        assert match.group(2).startswith("${"), match.group(0)
    example = (DEPLOY / "compose" / ".env.example").read_text(encoding="utf-8")
    needed = set(re.findall(r"\$\{(\w+):\?", text))
    given = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert needed <= given, needed - given
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/compose/.env"], cwd=REPO,
                             check=False).returncode
    assert ignored == 0, "deploy/compose/.env must be git-ignored"


def test_edge_gives_one_origin() -> None:
    services = compose()["services"]
    assert services["edge"]["image"].startswith("nginx:1.")
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text(encoding="utf-8")
    ws = nginx[nginx.index("location /api/ws"):]
    ws = ws[:ws.index("}")]
    assert "notifier:8082" in ws
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_read_timeout 3600s;" in ws
    rest = nginx[nginx.index("location / {"):]
    assert "gateway:8080" in rest[:rest.index("}")]
    assert "edge" in services["gateway"]["networks"]
    assert "edge" not in services["nats"]["networks"]


def test_only_bootstrap_and_the_projector_hold_the_database_owners_password() -> None:
    services = compose()["services"]
    urls = {name: services[name]["environment"].get("ALBATROSS_DATABASE_URL")
            for name in ("bootstrap", "projector", "gateway", "notifier")}
    assert urls["bootstrap"] == urls["projector"]
    assert urls["projector"].startswith("postgresql://albatross:${POSTGRES_PASSWORD")
    assert urls["gateway"].startswith("postgresql://albatross_reader:")
    assert urls["notifier"] is None  # it uses no database
    for name, service in services.items():
        if name not in ("bootstrap", "projector", "postgres"):
            assert "${POSTGRES_PASSWORD:" not in str(service.get("environment", {})), name

