"""`ash-ray kuberay render`: every option is a flag, the output is the manifests."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from ash_ray.kuberay import KubeRayOptions, add_kuberay_parser, render_manifests, render_yaml


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ash-ray")
    add_kuberay_parser(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    code: int = args.func(args)
    return code


def test_render_prints_the_default_rayservice(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["kuberay", "render"]) == 0
    assert capsys.readouterr().out == render_yaml(KubeRayOptions())


def test_render_with_flags(tmp_path: Path) -> None:
    out = tmp_path / "cluster.yaml"
    argv = [
        "kuberay", "render", "--kind", "raycluster", "--name", "agents", "--namespace", "ml",
        "--image", "registry.example.com/ash-ray:1.0", "--slots-per-worker", "16",
        "--worker-cpu", "8", "--worker-memory", "32Gi", "--worker-max-replicas", "20",
        "--redis-address", "redis.ml:6379", "--no-autoscaling", "--privileged",
        "--graceful-shutdown-timeout-s", "90", "-o", str(out),
    ]  # fmt: skip
    assert _run(argv) == 0
    expected = KubeRayOptions(
        kind="raycluster",
        name="agents",
        namespace="ml",
        image="registry.example.com/ash-ray:1.0",
        slots_per_worker=16,
        worker_cpu="8",
        worker_memory="32Gi",
        worker_max_replicas=20,
        redis_address="redis.ml:6379",
        autoscaling=False,
        privileged=True,
        graceful_shutdown_timeout_s=90,
    )
    assert out.read_text() == render_yaml(expected)
    (manifest,) = yaml.safe_load_all(out.read_text())
    assert manifest == render_manifests(expected)[0]
    assert manifest["metadata"] == {
        "name": "agents",
        "namespace": "ml",
        "labels": {
            "app.kubernetes.io/name": "ash",
            "app.kubernetes.io/instance": "agents",
            "app.kubernetes.io/managed-by": "ash-ray",
        },
    }


def test_every_option_has_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("render", "apply"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["kuberay", command, "--help"])
        help_text = capsys.readouterr().out
        for name in KubeRayOptions.model_fields:
            assert "--" + name.replace("_", "-") in help_text, (command, name)


def test_gcs_fault_tolerance_flag_on_a_rayservice(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["kuberay", "render", "--gcs-fault-tolerance"]) == 0
    (manifest,) = yaml.safe_load_all(capsys.readouterr().out)
    assert manifest["kind"] == "RayService"
    assert manifest["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]["redisAddress"] == (
        "redis:6379"
    )


def test_bad_options_exit_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["kuberay", "render", "--worker-cpu", "lots"]) == 2
    assert "--worker-cpu" in capsys.readouterr().err
    assert _run(["kuberay", "render", "--worker-min-replicas", "5"]) == 2
    assert "worker_min_replicas <= worker_replicas" in capsys.readouterr().err


def test_render_to_an_unwritable_file_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["kuberay", "render", "-o", str(tmp_path / "missing" / "x.yaml")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_unknown_kind_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["kuberay", "render", "--kind", "deployment"])
    assert exc.value.code == 2


def test_main_cli_has_the_kuberay_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from ash_ray.cli import main

    assert main(["kuberay", "render", "--kind", "raycluster"]) == 0
    assert capsys.readouterr().out == render_yaml(KubeRayOptions(kind="raycluster"))
