"""deploy/kuberay and ash_ray.kuberay: the manifests validate against the KubeRay CRD
schemas (strict, like `kubectl apply --validate=strict`), their Serve config against
Ray's own schema, and `apply` talks to a Kubernetes API the way the real client does."""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from _helm import K8S_VERSIONS, REPO, validation_problems
from ray.serve.schema import (
    DeploymentSchema,
    HTTPOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from ash_ray.kuberay import KubeRayOptions, render_manifests, render_yaml, serve_config
from ash_ray.kuberay.render import SESSION_SLOT_RESOURCE

DEPLOY_DIR = REPO / "deploy" / "kuberay"
#: The KubeRay CRDs (ray.io/v1) the manifests must satisfy, copied verbatim from the
#: project's shared schemas so that a clean clone can run this test.
CRD_DIR = DEPLOY_DIR / "crds"
SHARED_CRD_DIR = REPO.parent / "shared" / "schemas" / "kuberay"
FILES = {"rayservice.yaml": "rayservice", "raycluster-gcs-ft.yaml": "raycluster"}

VARIANTS = {
    "rayservice": KubeRayOptions(),
    "raycluster": KubeRayOptions(kind="raycluster"),
    "rayservice-gcs-ft-privileged": KubeRayOptions(
        gcs_fault_tolerance=True, privileged=True, namespace="agents", redis_password_key=""
    ),
    "raycluster-fixed-size": KubeRayOptions(
        kind="raycluster",
        autoscaling=False,
        worker_replicas=3,
        worker_min_replicas=3,
        worker_max_replicas=3,
        anthropic_api_key_key="",
        api_key_key="",
    ),
}


# -- the CRD schemas -------------------------------------------------------------------


def test_crd_copies_match_the_shared_schemas() -> None:
    names = sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    assert names == ["ray.io_rayclusters.yaml", "ray.io_rayservices.yaml"]
    if SHARED_CRD_DIR.is_dir():  # next to the lead's checkout, not in a clean clone
        for name in names:
            assert (CRD_DIR / name).read_bytes() == (SHARED_CRD_DIR / name).read_bytes(), name


def _closed(schema: Any) -> Any:
    """A CRD's OpenAPI v3 schema as JSON Schema, closed like the API server's strict
    field validation: an object with `properties` rejects any other field."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: _closed(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _closed(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_closed(sub) for sub in value]
        else:
            out[key] = value
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    text = (CRD_DIR / f"ray.io_{kind.lower()}s.yaml").read_text()
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert version["served"] and version["storage"]
    return jsonschema.Draft7Validator(_closed(version["schema"]["openAPIV3Schema"]))


def crd_problems(manifest: dict[str, Any]) -> list[str]:
    assert manifest["apiVersion"] == "ray.io/v1"
    errors = _validator(manifest["kind"]).iter_errors(manifest)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_manifests_validate_against_the_kuberay_crds(variant: str) -> None:
    for manifest in render_manifests(VARIANTS[variant]):
        assert crd_problems(manifest) == []


@pytest.mark.parametrize("name", sorted(FILES))
def test_deploy_files_validate_against_the_kuberay_crds(name: str) -> None:
    manifests = [m for m in yaml.safe_load_all((DEPLOY_DIR / name).read_text()) if m]
    assert [m["kind"] for m in manifests] == [
        {"rayservice": "RayService", "raycluster": "RayCluster"}[FILES[name]]
    ]
    for manifest in manifests:
        assert crd_problems(manifest) == []


def test_crd_validation_catches_a_misspelt_field() -> None:
    manifest = render_manifests()[0]
    cluster = manifest["spec"]["rayClusterConfig"]
    bad = {
        **manifest,
        "spec": {**manifest["spec"], "rayClusterConfig": {**cluster, "headGroup": {}}},
    }
    assert any("headGroup" in p for p in crd_problems(bad))
    workers = [{**cluster["workerGroupSpecs"][0], "minReplicas": "1"}]
    bad = {
        **manifest,
        "spec": {**manifest["spec"], "rayClusterConfig": {**cluster, "workerGroupSpecs": workers}},
    }
    assert any("minReplicas" in p for p in crd_problems(bad))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pod_templates_are_valid_pods(variant: str, version: str) -> None:
    """The pod templates also pass kubernetes-validate --strict as Pods."""
    pods = []
    for manifest in render_manifests(VARIANTS[variant]):
        for group in _groups(manifest):
            template = group["template"]
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "ash-pod", **template["metadata"]},
                    "spec": template["spec"],
                }
            )
    assert validation_problems(tuple(pods), version) == []


# -- the files are what render produces ------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILES))
def test_deploy_files_are_render_output_with_defaults(name: str) -> None:
    expected = render_yaml(KubeRayOptions(kind=FILES[name]))  # type: ignore[arg-type]
    assert (DEPLOY_DIR / name).read_text() == expected, (
        f"regenerate: ash-ray kuberay render --kind {FILES[name]} -o deploy/kuberay/{name}"
    )


def test_defaults_follow_the_project() -> None:
    """The Ray version is the one pyproject.toml pins; the image tag is the package version."""
    pyproject = (REPO / "pyproject.toml").read_text()
    ray_pin = re.search(r'"ray\[[^\]]*\]==([^"]+)"', pyproject)
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert ray_pin and version
    assert KubeRayOptions().ray_version == ray_pin.group(1)
    assert KubeRayOptions().image.endswith(":" + version.group(1))


def test_readme_explains_upgrades() -> None:
    readme = (DEPLOY_DIR / "README.md").read_text()
    assert "new Ray cluster" in readme and "Postgres" in readme
    for name in FILES:
        assert name in readme


# -- the Serve config ------------------------------------------------------------------


def _serve_configs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    if manifest["kind"] == "RayService":
        return [yaml.safe_load(manifest["spec"]["serveConfigV2"])]
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in head["env"]}
    return [yaml.safe_load(env["ASH_SERVE_CONFIG"]["value"])]


def _unknown_keys(data: dict[str, Any], model: Any, where: str) -> list[str]:
    return [f"{where}.{key}" for key in data if key not in model.model_fields]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_serve_config_passes_rays_serve_schema(variant: str) -> None:
    (manifest,) = render_manifests(VARIANTS[variant])
    (config,) = _serve_configs(manifest)
    ServeDeploySchema.model_validate(config)
    # Ray's models accept unknown keys silently; a typo must not.
    unknown = _unknown_keys(config, ServeDeploySchema, "config")
    unknown += _unknown_keys(config["http_options"], HTTPOptionsSchema, "http_options")
    for app in config["applications"]:
        unknown += _unknown_keys(app, ServeApplicationSchema, "application")
        for deployment in app["deployments"]:
            unknown += _unknown_keys(deployment, DeploymentSchema, "deployment")
    assert unknown == []


def test_serve_config_runs_the_ash_app_for_long_streams() -> None:
    config = serve_config(KubeRayOptions())
    assert config["proxy_location"] == "EveryNode"
    assert config["http_options"] == {"host": "0.0.0.0", "port": 4100}
    assert "request_timeout_s" not in config["http_options"], "it would cut SSE streams"
    (app,) = config["applications"]
    assert (app["name"], app["route_prefix"], app["import_path"]) == (
        "ash",
        "/",
        "ash_ray.app:build_app",
    )
    (deployment,) = app["deployments"]
    assert deployment["name"] == "AshIngress"
    assert deployment["max_ongoing_requests"] >= 1000
    assert deployment["graceful_shutdown_timeout_s"] >= 30


def test_serve_config_names_the_real_application() -> None:
    """Read from ash_ray/app.py's and ingress.py's source: importing them would import all
    of Ray Serve."""
    config = serve_config(KubeRayOptions())
    module, attr = config["applications"][0]["import_path"].split(":")
    source = ast.parse((REPO / Path(*module.split("."))).with_suffix(".py").read_text())
    functions = {n.name for n in source.body if isinstance(n, ast.FunctionDef)}
    ingress = ast.parse((REPO / "ash_ray" / "ingress.py").read_text())
    constants = {
        target.id: node.value.value
        for node in [*source.body, *ingress.body]
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attr in functions
    assert config["applications"][0]["name"] == constants["APP_NAME"]
    assert config["applications"][0]["deployments"][0]["name"] == constants["INGRESS_NAME"]


def test_both_kinds_run_the_same_serve_config() -> None:
    rayservice = _serve_configs(render_manifests(KubeRayOptions())[0])
    raycluster = _serve_configs(render_manifests(KubeRayOptions(kind="raycluster"))[0])
    assert rayservice == raycluster == [serve_config(KubeRayOptions())]


# -- the cluster shape -----------------------------------------------------------------


def _groups(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    cluster = spec["rayClusterConfig"] if manifest["kind"] == "RayService" else spec
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def _cluster(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]
    return spec["rayClusterConfig"] if manifest["kind"] == "RayService" else spec


def test_sessions_worker_group_declares_slots_and_is_resource_limited() -> None:
    options = KubeRayOptions(slots_per_worker=12, worker_cpu="6", worker_memory="24Gi")
    (manifest,) = render_manifests(options)
    (workers,) = _cluster(manifest)["workerGroupSpecs"]
    assert workers["groupName"] == "sessions"
    quoted = workers["rayStartParams"]["resources"]
    # KubeRay hands this to the shell: `ray start --resources "{\"ash_session_slot\": 12}"`.
    assert quoted.startswith('"') and quoted.endswith('"')
    assert json.loads(quoted[1:-1].replace('\\"', '"')) == {SESSION_SLOT_RESOURCE: 12}
    assert SESSION_SLOT_RESOURCE == "ash_session_slot"
    container = workers["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "6", "memory": "24Gi"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    head = _cluster(manifest)["headGroupSpec"]
    assert "resources" not in head["rayStartParams"], "sessions never land on the head"


def test_worker_readiness_does_not_wait_for_a_serve_proxy() -> None:
    (manifest,) = render_manifests()
    (workers,) = _cluster(manifest)["workerGroupSpecs"]
    probe = workers["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/api/local_raylet_healthz", "port": 52365}
    head = _cluster(manifest)["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["readinessProbe"]["httpGet"]["path"] == "/api/gcs_healthz"


def test_database_url_and_keys_come_from_the_secret() -> None:
    (manifest,) = render_manifests(KubeRayOptions(secret="prod-ash"))
    for group in _groups(manifest):
        container = group["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        for var in ("ASH_DATABASE_URL", "ANTHROPIC_API_KEY", "ASH_API_KEY"):
            assert env[var]["valueFrom"] == {"secretKeyRef": {"name": "prod-ash", "key": var}}
            assert "value" not in env[var]
        assert env["ASH_HOST"]["value"] == "0.0.0.0"
        assert env["ASH_PORT"]["value"] == "4100"
        assert env["ASH_SANDBOX_LIMITS"]["value"] == "rlimit"
        assert env["ASH_MAX_SANDBOXES"]["value"] == str(8 * 10)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["serve"] == 4100


def test_rayservice_upgrades_to_a_new_cluster() -> None:
    (manifest,) = render_manifests()
    assert manifest["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    assert "gcsFaultToleranceOptions" not in manifest["spec"]["rayClusterConfig"]
    assert "namespace" not in manifest["metadata"], "kubectl -n chooses"


def test_raycluster_keeps_gcs_state_in_redis_and_deploys_serve_itself() -> None:
    options = KubeRayOptions(kind="raycluster", redis_address="redis.ash:6379")
    (manifest,) = render_manifests(options)
    assert manifest["kind"] == "RayCluster"
    assert manifest["spec"]["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis.ash:6379",
        "redisPassword": {
            "valueFrom": {"secretKeyRef": {"name": "ash-secrets", "key": "REDIS_PASSWORD"}}
        },
    }
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    (command,) = head["command"]
    # KubeRay runs `<command> && ulimit ...; ray start ... --block`: the deploy must go to
    # the background inside a subshell that returns at once.
    assert command.startswith("( (") and command.endswith(") & )")
    assert "serve deploy" in command and "$ASH_SERVE_CONFIG" in command


def test_autoscaler_and_privileged_switches() -> None:
    (manifest,) = render_manifests(KubeRayOptions(autoscaling=False, privileged=True))
    cluster = _cluster(manifest)
    assert "enableInTreeAutoscaling" not in cluster
    container = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["privileged"] is True
    assert "ASH_SANDBOX_LIMITS" not in {e["name"] for e in container["env"]}
    (manifest,) = render_manifests()
    assert _cluster(manifest)["enableInTreeAutoscaling"] is True


@pytest.mark.parametrize(
    "bad",
    [
        {"worker_min_replicas": 5},
        {"worker_max_replicas": 1},
        {"worker_cpu": "four"},
        {"name": "Ash_Service"},
        {"kind": "deployment"},
        {"port": 0},
        {"unknown_option": 1},
    ],
)
def test_bad_options_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        KubeRayOptions(**bad)
