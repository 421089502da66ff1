"""``ash-ray kuberay render|apply``: the KubeRay manifests from the command line.

Every field of :class:`~ash_ray.kuberay.render.KubeRayOptions` is a flag
(``slots_per_worker`` -> ``--slots-per-worker``), so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import ValidationError

from ash_ray.errors import AshError
from ash_ray.kuberay.apply import apply_manifests, load_custom_objects_api
from ash_ray.kuberay.render import KubeRayOptions, render_manifests, render_yaml


def add_kuberay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``kuberay render`` and ``kuberay apply`` on the main CLI's subparsers.

    Each leaf parser sets ``func(args) -> int``, the exit code.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kuberay",
        help="render or apply the KubeRay RayService / RayCluster for ash-ray",
        description="KubeRay manifests for ash-ray (ray.io/v1 RayService or RayCluster).",
    )
    commands = parser.add_subparsers(dest="kuberay_command", metavar="{render,apply}")
    commands.required = True

    render = commands.add_parser(
        "render",
        help="print the manifests",
        description="Print the KubeRay manifests for the given options as YAML.",
    )
    _add_option_flags(render)
    render.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    render.set_defaults(func=run_render)

    apply = commands.add_parser(
        "apply",
        help="create or patch the manifests in the cluster",
        description="Create the RayService/RayCluster, or patch it when it exists "
        "(CustomObjectsApi, group ray.io, version v1).",
    )
    _add_option_flags(apply)
    apply.add_argument(
        "-f",
        "--filename",
        metavar="FILE",
        help="apply the manifests in FILE (e.g. deploy/kuberay/rayservice.yaml) instead of "
        "rendering them from the options",
    )
    apply.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: KUBECONFIG)")
    apply.add_argument("--context", help="kubeconfig context (default: the current one)")
    apply.set_defaults(func=run_apply)
    return parser


def run_render(args: argparse.Namespace) -> int:
    """``ash-ray kuberay render``."""
    options = _options(args)
    if options is None:
        return 2
    text = render_yaml(options)
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text)
    except OSError as exc:
        sys.stderr.write(f"ash-ray kuberay render: {exc}\n")
        return 1
    return 0


def run_apply(args: argparse.Namespace) -> int:
    """``ash-ray kuberay apply``."""
    options = _options(args)
    if options is None:
        return 2
    try:
        if args.filename:
            manifests = [m for m in yaml.safe_load_all(Path(args.filename).read_text()) if m]
        else:
            manifests = render_manifests(options)
        api = load_custom_objects_api(kubeconfig=args.kubeconfig, context=args.context)
        applied = apply_manifests(manifests, namespace=options.namespace or "default", api=api)
    except (AshError, OSError, yaml.YAMLError) as exc:
        sys.stderr.write(f"ash-ray kuberay apply: {exc}\n")
        return 1
    for item in applied:
        sys.stdout.write(f"{item}\n")
    return 0


def _options(args: argparse.Namespace) -> KubeRayOptions | None:
    given = {
        name: getattr(args, name) for name in KubeRayOptions.model_fields if hasattr(args, name)
    }
    try:
        return KubeRayOptions(**given)
    except ValidationError as exc:
        for err in exc.errors():
            loc = "-".join(str(part) for part in err["loc"]).replace("_", "-")
            sys.stderr.write(f"ash-ray kuberay: {'--' + loc if loc else 'options'}: {err['msg']}\n")
        return None


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("manifest options")
    for name, field in KubeRayOptions.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = _strip_none(field.annotation)
        default = field.get_default(call_default_factory=True)
        help_text = str(field.description)
        if "default" not in help_text:
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is Literal:
            kwargs["choices"] = list(get_args(annotation))
        else:
            kwargs["type"] = annotation
        group.add_argument(flag, **kwargs)


def _strip_none(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation
