"""charts/ash rendered with helm-python-sdk: every values key of the guide does what the
guide says, every object passes `kubernetes-validate --strict`, bad values are refused."""

from __future__ import annotations

import base64
import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from _helm import (
    CHART_DIR,
    EXAMPLES_DIR,
    K8S_VERSIONS,
    chart,
    load_values_file,
    render,
    render_error,
    validation_problems,
)

EXAMPLES = ("production", "production-ha", "enterprise")
HA_DB = {"ash": {"databaseUrl": "postgresql://ash@cockroachdb:26257/ash?sslmode=verify-full"}}

#: Every optional object and key switched on at once, to validate them all.
KITCHEN_SINK: dict[str, Any] = {
    "replicaCount": 2,
    "image": {"repository": "registry.example.com/ash", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "ash": {
        "port": 8080,
        "databaseUrl": "postgresql://ash@pg:5432/ash",
        "maxSandboxes": 250,
        "idleTimeoutMs": 600000,
        "extraEnv": [
            {"name": "ANTHROPIC_BASE_URL", "value": "https://gateway.internal"},
            {"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
    },
    "auth": {"apiKey": "dev-key", "anthropicApiKey": "sk-ant-dev"},
    "persistence": {"size": "30Gi", "storageClass": "fast", "annotations": {"a": "b"}},
    "service": {
        "type": "LoadBalancer",
        "port": 80,
        "annotations": {"x": "y"},
        "labels": {"l": "v"},
    },
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
        "hosts": [{"host": "ash.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "ash-tls", "hosts": ["ash.example.com"]}],
    },
    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 5,
        "targetMemoryUtilizationPercentage": 75,
    },
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"},
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "interval": "15s",
            "scrapeTimeout": "10s",
            "additionalLabels": {"release": "prometheus"},
        }
    },
    "nodeSelector": {"pool": "agents"},
    "tolerations": [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "ash"}},
                    },
                }
            ]
        }
    },
    "podLabels": {"team": "agents"},
    "podAnnotations": {"prometheus.io/scrape": "false"},
    "securityContext": {"privileged": False},
    "terminationGracePeriodSeconds": 120,
}


def example(name: str) -> dict[str, Any]:
    return load_values_file(EXAMPLES_DIR / f"{name}.yaml")


SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    **{name: example(name) for name in EXAMPLES},
    "kitchen-sink": KITCHEN_SINK,
    "no-persistence": {"persistence": {"enabled": False}},
}


# -- every object is valid Kubernetes --------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_passes_kubernetes_validate_strict(scenario: str, version: str) -> None:
    release = render(SCENARIOS[scenario])
    assert validation_problems(release.objects, version) == []


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The validator is not a rubber stamp: an unknown field fails."""
    sts = dict(render().statefulset)
    sts["spec"] = {**sts["spec"], "replica": 1}
    assert validation_problems((sts,), K8S_VERSIONS[0])


def test_validated_versions_are_the_oldest_supported_and_the_newest_known() -> None:
    assert K8S_VERSIONS[0] == "1.25"
    assert tuple(int(p) for p in K8S_VERSIONS[1].split(".")[:2]) >= (1, 37)
    assert chart().metadata["kubeVersion"] == ">=1.25.0-0"


def test_helm_lint_is_clean() -> None:
    report = helm.lint(CHART_DIR, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# -- defaults and the quick start ------------------------------------------------------


def test_quick_start_service_is_ash_on_4100_with_keys_from_the_secret() -> None:
    """`helm install ash ./charts/ash --set auth.existingSecret=ash-secrets`."""
    release = render(helm.parse_set_string("auth.existingSecret=ash-secrets"))
    service = release.get("Service", "ash")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 4100, "targetPort": "http", "protocol": "TCP"}
    ]
    env = release.env
    assert env["ANTHROPIC_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "ash-secrets", "key": "ANTHROPIC_API_KEY"}
    }
    assert env["ASH_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "ash-secrets", "key": "ASH_API_KEY"}
    }
    assert not release.has("Secret"), "an existing secret needs no chart-made Secret"


def test_defaults_one_pod_statefulset_with_the_contract_env() -> None:
    release = render()
    sts = release.statefulset
    assert sts["metadata"]["name"] == "ash"
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == "ash-headless"
    env = release.env
    assert env["ASH_HOST"]["value"] == "0.0.0.0"
    assert env["ASH_PORT"]["value"] == "4100"
    assert env["ASH_DATA_DIR"]["value"] == "/data"
    assert env["ASH_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ASH_MAX_SANDBOXES"]["value"] == "100"
    assert env["ASH_IDLE_TIMEOUT_MS"]["value"] == "1800000"
    assert "ASH_DATABASE_URL" not in env, "empty databaseUrl means SQLite under /data"
    assert "ASH_SANDBOX_LIMITS" not in env, "privileged by default: Ash picks the limits"
    assert "ANTHROPIC_API_KEY" not in env and "ASH_API_KEY" not in env
    assert release.container["args"] == ["ash-ray", "serve"]
    assert (
        release.container["image"] == f"ghcr.io/ash-ai-org/ash-ray:{chart().metadata['appVersion']}"
    )


def test_every_value_is_a_string_in_env() -> None:
    for name in ("defaults", "kitchen-sink"):
        for var in render(SCENARIOS[name]).container["env"]:
            assert "valueFrom" in var or isinstance(var["value"], str), var


def test_app_version_is_the_package_version() -> None:
    pyproject = (CHART_DIR.parents[1] / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert version and chart().metadata["appVersion"] == version.group(1)


# -- one Ray cluster: head address, headless service, ports ----------------------------


def test_pods_join_pod_zero_through_the_headless_service() -> None:
    release = render(HA_DB | {"replicaCount": 3}, namespace="agents")
    headless = release.get("Service", "ash-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    ports = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    assert ports["gcs"] == 6379 and ports["dashboard"] == 8265
    assert {"node-manager", "object-manager", "client"} <= set(ports)
    container_ports = {p["name"]: p["containerPort"] for p in release.container["ports"]}
    for port in headless["spec"]["ports"]:
        assert container_ports[port["targetPort"]] == port["port"], port
    assert release.statefulset["spec"]["serviceName"] == "ash-headless"
    assert release.env["ASH_RAY_HEAD_ADDRESS"]["value"] == (
        "ash-0.ash-headless.agents.svc.cluster.local:6379"
    )
    assert headless["spec"]["selector"] == release.statefulset["spec"]["selector"]["matchLabels"]
    # One AshIngress replica per pod, so every pod runs a Serve proxy for its probes.
    assert release.env["ASH_SERVE_REPLICAS"]["value"] == "3"


def test_cluster_domain_is_configurable() -> None:
    release = render({"clusterDomain": "corp.local"})
    assert release.env["ASH_RAY_HEAD_ADDRESS"]["value"].endswith(".svc.corp.local:6379")


def test_pods_start_in_parallel_and_roll_one_at_a_time() -> None:
    spec = render().statefulset["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}


# -- replicas need a shared database ---------------------------------------------------


def test_more_than_one_replica_without_a_database_is_refused_with_the_reason() -> None:
    message = render_error({"replicaCount": 3})
    assert "replicaCount=3 needs ash.databaseUrl" in message
    assert "SQLite" in message and "one pod's volume" in message


def test_autoscaling_above_one_pod_without_a_database_is_refused() -> None:
    message = render_error({"autoscaling": {"enabled": True, "maxReplicas": 4}})
    assert "autoscaling.maxReplicas=4 needs ash.databaseUrl" in message
    assert "SQLite" in message


def test_autoscaling_to_one_pod_with_sqlite_is_fine() -> None:
    release = render({"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 1}})
    assert release.get("HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 1


def test_sqlite_url_does_not_count_as_shared() -> None:
    assert "needs ash.databaseUrl" in render_error(
        {"replicaCount": 2, "ash": {"databaseUrl": "sqlite:/data/ash.db"}}
    )


def test_database_url_from_the_existing_secret_allows_replicas() -> None:
    release = render(
        {
            "replicaCount": 3,
            "auth": {"existingSecret": "ash-secrets", "existingSecretKeys": {"databaseUrl": "DB"}},
        }
    )
    assert release.env["ASH_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "ash-secrets", "key": "DB"}
    }


def test_min_above_max_replicas_is_refused() -> None:
    message = render_error(
        HA_DB | {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}
    )
    assert "minReplicas=5 is above autoscaling.maxReplicas=2" in message


# -- the guide's example values --------------------------------------------------------


def test_production_example() -> None:
    release = render(example("production"))
    assert release.statefulset["spec"]["replicas"] == 1
    claim = release.statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert release.container["resources"] == {
        "requests": {"cpu": "1000m", "memory": "4Gi"},
        "limits": {"cpu": "4000m", "memory": "16Gi"},
    }
    ingress = release.get("Ingress", "ash")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "ash.internal.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "ash", "port": {"name": "http"}}},
        }
    ]
    assert ingress["spec"]["tls"] == [
        {"hosts": ["ash.internal.example.com"], "secretName": "ash-tls"}
    ]
    assert release.env["ASH_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "ash-secrets"
    assert "https://ash.internal.example.com/" in release.notes


def test_production_ha_example() -> None:
    release = render(example("production-ha"))
    assert release.env["ASH_DATABASE_URL"]["value"] == (
        "postgresql://ash@cockroachdb:26257/ash?sslmode=verify-full"
    )
    assert "replicas" not in release.statefulset["spec"], "the HPA owns the replica count"
    hpa = release.get("HorizontalPodAutoscaler", "ash")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "ash",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = release.get("PodDisruptionBudget", "ash")
    assert pdb["spec"]["minAvailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == (release.statefulset["spec"]["selector"]["matchLabels"])
    )
    claim = release.statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_enterprise_example() -> None:
    release = render(example("enterprise"))
    assert release.container["image"] == (
        "123456789.dkr.ecr.us-west-2.amazonaws.com/ash-ai/ash:0.0.8"
    )
    service = release.get("Service", "ash")
    assert service["metadata"]["annotations"] == {
        "consul.hashicorp.com/service-name": "ash-agents",
        "consul.hashicorp.com/service-sync": "true",
    }
    labels = service["metadata"]["labels"]
    assert labels["my-dashboard/enabled"] == "true"
    assert labels["my-dashboard/name"] == "ash-agents"
    pod_labels = release.statefulset["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["my-dashboard/name"] == "ash-agents"
    monitor = release.get("ServiceMonitor", "ash")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


def test_service_monitor_selects_the_http_service_only() -> None:
    release = render(KITCHEN_SINK)
    monitor = release.get("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    matching = [
        s["metadata"]["name"]
        for s in release.all("Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert matching == ["ash"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["default"]}
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    assert "http" in [p["name"] for p in release.get("Service", "ash")["spec"]["ports"]]


def test_no_optional_objects_by_default() -> None:
    kinds = sorted(o["kind"] for o in render().objects)
    assert kinds == ["Pod", "Service", "Service", "StatefulSet"]


# -- every other key -------------------------------------------------------------------


def test_image_and_pull_secrets() -> None:
    release = render(KITCHEN_SINK)
    assert release.container["image"] == "registry.example.com/ash:1.2.3"
    assert release.container["imagePullPolicy"] == "Always"
    assert release.pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
    test_pod = release.get("Pod")
    assert test_pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert test_pod["spec"]["containers"][0]["image"] == "registry.example.com/ash:1.2.3"


def test_ash_settings_reach_the_environment() -> None:
    release = render(KITCHEN_SINK)
    env = release.env
    assert env["ASH_PORT"]["value"] == "8080"
    assert env["ASH_DATABASE_URL"]["value"] == "postgresql://ash@pg:5432/ash"
    assert env["ASH_MAX_SANDBOXES"]["value"] == "250"
    assert env["ASH_IDLE_TIMEOUT_MS"]["value"] == "600000"
    assert env["ANTHROPIC_BASE_URL"]["value"] == "https://gateway.internal"
    assert env["FROM_FIELD"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    names = [e["name"] for e in release.container["env"]]
    assert names[-2:] == ["ANTHROPIC_BASE_URL", "FROM_FIELD"], "extraEnv comes last"
    http = next(p for p in release.container["ports"] if p["name"] == "http")
    assert http["containerPort"] == 8080
    service = release.get("Service", "ash")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["metadata"]["annotations"] == {"x": "y"}
    assert service["metadata"]["labels"]["l"] == "v"


def test_large_numbers_are_not_rendered_in_float_notation() -> None:
    env = render({"ash": {"idleTimeoutMs": 86400000, "maxSandboxes": 100000}}).env
    assert env["ASH_IDLE_TIMEOUT_MS"]["value"] == "86400000"
    assert env["ASH_MAX_SANDBOXES"]["value"] == "100000"


def test_placement_labels_annotations_and_resources() -> None:
    release = render(KITCHEN_SINK)
    spec = release.pod_spec
    assert spec["nodeSelector"] == {"pool": "agents"}
    assert spec["tolerations"] == KITCHEN_SINK["tolerations"]
    assert spec["affinity"] == KITCHEN_SINK["affinity"]
    metadata = release.statefulset["spec"]["template"]["metadata"]
    assert metadata["labels"]["team"] == "agents"
    assert metadata["annotations"]["prometheus.io/scrape"] == "false"
    assert release.container["resources"] == KITCHEN_SINK["resources"]
    test_pod = release.get("Pod")
    assert test_pod["spec"]["nodeSelector"] == {"pool": "agents"}
    assert test_pod["spec"]["tolerations"] == KITCHEN_SINK["tolerations"]


def test_pod_labels_cannot_break_the_selector() -> None:
    release = render({"podLabels": {"app.kubernetes.io/name": "other", "x": "1"}})
    labels = release.statefulset["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "ash"
    assert labels["x"] == "1"
    service_labels = render({"service": {"labels": {"app.kubernetes.io/component": "x"}}}).get(
        "Service", "ash"
    )["metadata"]["labels"]
    assert service_labels["app.kubernetes.io/component"] == "http"


def test_pdb_max_unavailable_replaces_min_available() -> None:
    pdb = render(KITCHEN_SINK).get("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == "25%"
    assert "minAvailable" not in pdb["spec"]


def test_hpa_memory_metric_when_asked() -> None:
    metrics = render(KITCHEN_SINK).get("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["resource"]["name"] for m in metrics] == ["cpu", "memory"]
    assert metrics[1]["resource"]["target"]["averageUtilization"] == 75


# -- persistence -----------------------------------------------------------------------


def test_data_volume_claim_template_at_slash_data() -> None:
    release = render(KITCHEN_SINK)
    claims = release.statefulset["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    claim = claims[0]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "30Gi"
    assert claim["metadata"]["annotations"] == {"a": "b"}
    # `kubectl delete pvc -l app.kubernetes.io/instance=<release>` finds the claims.
    assert claim["metadata"]["labels"]["app.kubernetes.io/instance"] == "ash"
    mounts = {m["name"]: m["mountPath"] for m in release.container["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert "data" not in [v["name"] for v in release.pod_spec["volumes"]]


def test_persistence_disabled_uses_an_empty_dir() -> None:
    release = render({"persistence": {"enabled": False}})
    assert "volumeClaimTemplates" not in release.statefulset["spec"]
    volumes = {v["name"]: v for v in release.pod_spec["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert "emptyDir" in release.notes


def test_ray_gets_shared_memory() -> None:
    release = render()
    volumes = {v["name"]: v for v in release.pod_spec["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}
    mounts = {m["name"]: m["mountPath"] for m in release.container["volumeMounts"]}
    assert mounts["dshm"] == "/dev/shm"


# -- security --------------------------------------------------------------------------


def test_privileged_by_default() -> None:
    release = render()
    assert release.container["securityContext"]["privileged"] is True
    assert "ASH_SANDBOX_LIMITS" not in release.env
    assert release.pod_spec["automountServiceAccountToken"] is False


def test_unprivileged_falls_back_to_rlimits_and_runs_as_non_root() -> None:
    release = render({"securityContext": {"privileged": False}})
    context = release.container["securityContext"]
    assert context["privileged"] is False
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert release.env["ASH_SANDBOX_LIMITS"]["value"] == "rlimit"
    assert "rlimit" in release.notes


# -- the three ways to pass keys -------------------------------------------------------


def test_existing_secret_with_other_key_names() -> None:
    keys = {"anthropicApiKey": "anthropic", "apiKey": "ash", "databaseUrl": ""}
    env = render({"auth": {"existingSecret": "vault-synced", "existingSecretKeys": keys}}).env
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "vault-synced",
        "key": "anthropic",
    }
    assert env["ASH_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "vault-synced", "key": "ash"}
    assert "ASH_DATABASE_URL" not in env


def test_existing_secret_key_left_empty_is_not_read() -> None:
    release = render({"auth": {"existingSecret": "s", "existingSecretKeys": {"apiKey": ""}}})
    assert "ASH_API_KEY" not in release.env
    assert "ANTHROPIC_API_KEY" in release.env
    assert "WITHOUT authentication" in release.notes


def test_inline_keys_go_to_a_chart_secret() -> None:
    release = render({"auth": {"apiKey": "dev-key", "anthropicApiKey": "sk-ant-dev"}})
    secret = release.get("Secret", "ash")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"ANTHROPIC_API_KEY": "sk-ant-dev", "ASH_API_KEY": "dev-key"}
    env = release.env
    assert env["ASH_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "ash", "key": "ASH_API_KEY"}
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "ash",
        "key": "ANTHROPIC_API_KEY",
    }
    annotations = release.statefulset["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])
    changed = render({"auth": {"apiKey": "other", "anthropicApiKey": "sk-ant-dev"}})
    changed_annotations = changed.statefulset["spec"]["template"]["metadata"]["annotations"]
    assert changed_annotations["checksum/secret"] != annotations["checksum/secret"]
    assert "auth.existingSecret" in release.notes


def test_only_the_inline_keys_given_are_stored() -> None:
    release = render({"auth": {"anthropicApiKey": "sk-ant-dev"}})
    assert set(release.get("Secret")["data"]) == {"ANTHROPIC_API_KEY"}
    assert "ASH_API_KEY" not in release.env


def test_no_auth_runs_with_a_warning() -> None:
    release = render()
    assert not release.has("Secret")
    assert "WITHOUT" in release.notes and "authentication" in release.notes


def test_existing_secret_and_inline_keys_together_are_refused() -> None:
    message = render_error({"auth": {"existingSecret": "s", "apiKey": "k"}})
    assert "auth.existingSecret and inline keys" in message


# -- probes, drain, helm test ----------------------------------------------------------


def test_probes_ask_health_on_the_http_port() -> None:
    container = render().container
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe


def test_pre_stop_drains_three_seconds_then_sigterm_drains_within_the_grace_period() -> None:
    for values in ({}, {"terminationGracePeriodSeconds": 120}):
        release = render(values)
        assert release.container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "3"]}}
        grace = release.pod_spec["terminationGracePeriodSeconds"]
        drain = float(release.env["ASH_DRAIN_TIMEOUT_S"]["value"])
        assert 0 < drain < grace - 3, (grace, drain)
        assert grace - 3 - drain <= 10, "drain uses most of the grace period"


def test_helm_test_pod_curls_health_through_the_service() -> None:
    for values in ({}, {"service": {"port": 80}}):
        release = render(values)
        pod = release.get("Pod")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
        command = pod["spec"]["containers"][0]["command"]
        assert command[0] == "curl" and "--fail" in command
        port = release.get("Service", "ash")["spec"]["ports"][0]["port"]
        assert command[-1] == f"http://ash:{port}/health"


# -- names, labels, helpers ------------------------------------------------------------


def test_release_name_containing_the_chart_name_is_used_as_is() -> None:
    assert render(release="ash").statefulset["metadata"]["name"] == "ash"
    assert render(release="my-ash").statefulset["metadata"]["name"] == "my-ash"
    assert render(release="agents").statefulset["metadata"]["name"] == "agents-ash"
    assert render({"fullnameOverride": "agents"}).statefulset["metadata"]["name"] == "agents"


def test_names_and_labels_fit_in_63_characters() -> None:
    longest_release = "r" * 53
    helm.validate_release_name(longest_release)
    releases = [
        render(KITCHEN_SINK, release=longest_release),
        render({"fullnameOverride": "f" * 80, "nameOverride": "n" * 80}),
    ]
    for release in releases:
        for obj in release.objects:
            assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
            for value in obj["metadata"].get("labels", {}).values():
                assert len(value) <= 63, value
        name = release.statefulset["metadata"]["name"]
        assert not name.endswith("-")
        # Pod names get "-<ordinal>", and the pods' controller-revision-hash label holds
        # "<name>-<hash>"; both must stay valid label values.
        assert len(name) <= 63


def test_standard_labels() -> None:
    labels = render().statefulset["metadata"]["labels"]
    assert labels == {
        "helm.sh/chart": f"ash-{chart().metadata['version']}",
        "app.kubernetes.io/name": "ash",
        "app.kubernetes.io/instance": "ash",
        "app.kubernetes.io/version": chart().metadata["appVersion"],
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "ash",
    }
    selector = render().statefulset["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "ash", "app.kubernetes.io/instance": "ash"}


def test_helpers_are_defined() -> None:
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    for name in ("ash.name", "ash.fullname", "ash.labels", "ash.selectorLabels"):
        assert f'{{{{- define "{name}" -}}}}' in helpers, name
    assert helpers.count("trunc 63") >= 4


# -- NOTES -----------------------------------------------------------------------------


def test_notes_say_how_to_reach_ash_and_where_the_key_comes_from() -> None:
    notes = render(helm.parse_set_string("auth.existingSecret=ash-secrets")).notes
    assert "http://ash:4100" in notes
    assert "kubectl port-forward --namespace default svc/ash 4100:4100" in notes
    assert "ASH_API_KEY in your Secret ash-secrets" in notes
    assert "kubectl get secret --namespace default ash-secrets" in notes
    assert "helm test ash" in notes
    lb = render({"service": {"type": "LoadBalancer"}}).notes
    assert "loadBalancer.ingress" in lb


# -- values.yaml and values.schema.json ------------------------------------------------


def test_every_value_has_a_doc_comment() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    list_indent: int | None = None
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if not stripped or stripped.startswith("#"):
            continue
        if list_indent is not None and indent > list_indent:
            continue  # inside a list item of a default: documented by its key
        if stripped.startswith("- "):
            list_indent = indent
            continue
        list_indent = None
        key = re.match(r"([\w./-]+):", stripped)
        assert key, f"values.yaml line {number + 1} is not a key: {line!r}"
        above = number - 1
        block_start = None
        while above >= 0 and lines[above].strip().startswith("#"):
            block_start = above
            above -= 1
        if block_start is None or not lines[block_start].strip().startswith("# -- "):
            undocumented.append(key.group(1))
    assert undocumented == []


def test_schema_covers_exactly_the_values() -> None:
    schema = chart().schema
    assert schema is not None
    assert schema["additionalProperties"] is False
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert set(defaults) == set(schema["properties"]) - {"global"}
    chart().validate_schema(defaults)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"replicaCount": "three"}, "/replicaCount"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"tagg": "1"}}, "additional properties 'tagg'"),
        ({"ash": {"port": 0}}, "/ash/port"),
        ({"ash": {"databaseUrl": "mysql://db/ash"}}, "/ash/databaseUrl"),
        ({"ash": {"maxSandboxes": "many"}}, "/ash/maxSandboxes"),
        ({"ash": {"extraEnv": {"A": "b"}}}, "/ash/extraEnv"),
        ({"auth": {"existingSecret": True}}, "/auth/existingSecret"),
        ({"persistence": {"size": 50}}, "/persistence/size"),
        ({"service": {"type": "Headless"}}, "/service/type"),
        ({"service": {"annotations": {"a": 1}}}, "/service/annotations/a"),
        ({"ingress": {"enabled": "yes"}}, "/ingress/enabled"),
        ({"autoscaling": {"maxReplicas": 0}}, "/autoscaling/maxReplicas"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "/podDisruptionBudget/minAvailable"),
        ({"metrics": {"serviceMonitor": {"interval": 30}}}, "/metrics/serviceMonitor/interval"),
        ({"securityContext": {"privileged": "false"}}, "/securityContext/privileged"),
        ({"securityContext": {"runAsUser": 0}}, "additional properties 'runAsUser'"),
        ({"terminationGracePeriodSeconds": 5}, "/terminationGracePeriodSeconds"),
        ({"nodeSelector": ["a"]}, "/nodeSelector"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    message = render_error(values)
    assert "don't meet the specifications of the schema" in message
    assert complaint in message, message


def test_examples_are_schema_valid() -> None:
    for name in EXAMPLES:
        chart().validate_schema(example(name))
