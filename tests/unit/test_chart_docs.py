"""docs/kubernetes.md, command for command and key for key, against charts/ash.

Every yaml block of the guide renders and validates; every shell command is checked
against what the chart renders (Secret keys, release and Service names, -f files and
--set values, the helm test pod, PVC labels, the image to mirror). A command this test
does not understand fails it, so the guide cannot drift from the chart unnoticed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
from _helm import (
    EXAMPLES_DIR,
    K8S_VERSIONS,
    REPO,
    Release,
    chart,
    load_values_file,
    render,
    render_command,
    render_error,
    validation_problems,
)

GUIDE = REPO / "docs" / "kubernetes.md"


def _blocks(language: str) -> list[str]:
    text = GUIDE.read_text()
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, flags=re.S | re.M)


def _named_values() -> dict[str, dict[str, Any]]:
    """The guide's values files: yaml blocks whose first line is `# <name>.yaml`."""
    files = {}
    for block in _blocks("yaml"):
        first = block.lstrip().splitlines()[0]
        name = re.fullmatch(r"#\s*([\w.-]+\.yaml)\b.*", first)
        assert name, f"every yaml block in the guide starts with `# <file>.yaml`: {first!r}"
        files[name.group(1)] = helm.values_from_yaml(block)
    return files


def _commands() -> Iterator[str]:
    """Shell commands of the guide, continuation lines joined, comments dropped."""
    for block in _blocks("bash"):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                yield re.sub(r"\s+#.*$", "", line)


VALUES = _named_values()
COMMANDS = list(_commands())


def test_the_guide_has_the_example_values_and_commands() -> None:
    assert {"production.yaml", "production-ha.yaml", "enterprise.yaml"} <= set(VALUES)
    assert any(c.startswith("helm install ash ./charts/ash") for c in COMMANDS)
    assert "helm test ash" in COMMANDS
    assert "helm uninstall ash" in COMMANDS


@pytest.mark.parametrize("name", sorted(VALUES))
def test_every_values_block_renders_and_validates(name: str) -> None:
    values = VALUES[name]
    chart().validate_schema(values)
    release = render(values)
    for version in K8S_VERSIONS:
        assert validation_problems(release.objects, version) == []


@pytest.mark.parametrize("name", ["production", "production-ha", "enterprise"])
def test_the_guide_examples_are_the_chart_examples(name: str) -> None:
    assert VALUES[f"{name}.yaml"] == load_values_file(EXAMPLES_DIR / f"{name}.yaml")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_matches_the_chart(command: str) -> None:
    words = shlex.split(command)
    tool, verb = words[0], words[1] if len(words) > 1 else ""
    if tool == "helm" and verb in ("install", "upgrade"):
        _check_install(command)
    elif tool == "helm" and verb == "test":
        _check_helm_test(words[2])
    elif tool == "helm" and verb == "uninstall":
        assert words[2:] == ["ash"]
    elif tool == "kubectl" and verb == "create":
        _check_secret(command)
    elif tool == "kubectl" and verb == "delete":
        _check_pvc_cleanup(words)
    elif tool == "kubectl" and verb == "port-forward":
        _check_port_forward(words)
    elif tool == "curl":
        assert words[1].startswith("http://127.0.0.1:4100/"), command
    elif tool == "docker":
        _check_mirroring(words)
    else:
        pytest.fail(f"the test does not know how to check: {command}")


def _check_install(command: str) -> None:
    release = render_command(command, VALUES)
    assert release.name == "ash"
    assert validation_problems(release.objects, K8S_VERSIONS[0]) == []
    # Every install of the guide can authenticate clients with a key from a Secret.
    env = release.env
    assert env["ASH_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] in (
        "ash-secrets",
        release.statefulset["metadata"]["name"],
    )


def _check_helm_test(release_name: str) -> None:
    release = render(release=release_name)
    pod = release.get("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][0] == "curl"
    assert pod["spec"]["containers"][0]["command"][-1] == "http://ash:4100/health"


def _check_secret(command: str) -> None:
    words = shlex.split(command)
    assert words[:4] == ["kubectl", "create", "secret", "generic"]
    name = words[4]
    keys = set(re.findall(r"--from-literal=(\w+)=", command))
    installs = [c for c in COMMANDS if c.startswith("helm install")]
    assert any(f"auth.existingSecret={name}" in c for c in installs), name
    defaults = chart().values["auth"]["existingSecretKeys"]
    assert {defaults["anthropicApiKey"], defaults["apiKey"]} == keys


def _check_pvc_cleanup(words: list[str]) -> None:
    assert words[:3] == ["kubectl", "delete", "pvc"] and words[3] == "-l"
    key, value = words[4].split("=")
    claim = render().statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["labels"][key] == value
    # The StatefulSet controller also copies its selector labels onto the claims.
    assert render().statefulset["spec"]["selector"]["matchLabels"][key] == value


def _check_port_forward(words: list[str]) -> None:
    target, ports = words[2], words[3]
    kind, name = target.split("/")
    local, remote = ports.split(":")
    assert kind == "svc" and local == "4100"
    service = render().get("Service", name)
    assert int(remote) in [p["port"] for p in service["spec"]["ports"]]


def _check_mirroring(words: list[str]) -> None:
    default_image = f"{chart().values['image']['repository']}:{chart().metadata['appVersion']}"
    if words[1] == "pull":
        assert words[2] == default_image
    elif words[1] == "tag":
        assert words[2] == default_image
        assert words[3] == "YOUR_REGISTRY/ash-ai/ash-ray:" + chart().metadata["appVersion"]
    else:
        assert words[1] == "push" and words[2].startswith("YOUR_REGISTRY/")


def test_the_refusal_quoted_in_the_guide_is_what_the_chart_says() -> None:
    quoted = next(b for b in _blocks("text") if "needs ash.databaseUrl" in b)
    message = quoted.split("execution error at ", 1)[1].rstrip(". \n")
    assert message in render_error({"replicaCount": 3})


def test_the_guide_names_the_objects_the_chart_creates() -> None:
    text = GUIDE.read_text()
    release: Release = render(
        {"auth": {"apiKey": "k"}, "ingress": {"enabled": True}}, release="ash"
    )
    for obj in release.objects:
        assert f"`{obj['metadata']['name']}`" in text, obj["metadata"]["name"]
    ha = render(VALUES["production-ha.yaml"])
    assert ha.get("HorizontalPodAutoscaler")["metadata"]["name"] == "ash"
    assert "data-ash-0" in text and "`ash-0`" in text
