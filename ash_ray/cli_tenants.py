"""``ash-ray keys`` and ``ash-ray credentials``: a tenant's API keys and stored model keys.

``keys`` acts on the caller's tenant (the key given with ``--api-key``/``ASH_API_KEY``);
``--tenant`` acts on another through the admin routes, which take ASH_API_KEY itself.
A credential's key is read from the environment (``--key-env``) or standard input, never
from the command line, where other users could read it in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from ash_ray.chat import _api

CREDENTIAL_TYPES = ("anthropic", "bedrock", "custom", "openai")


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    table = Table(*cols)
    for row in rows:
        table.add_row(*(str(row.get(c) if row.get(c) is not None else "") for c in cols))
    Console().print(table)


def cmd_keys(args: argparse.Namespace) -> int:
    api = _api(args)
    admin = args.tenant is not None
    base = "/api/admin/api-keys" if admin else "/api/api-keys"
    params = {"tenant": args.tenant} if admin else None
    console = Console()
    if args.action == "list":
        _table(api.call("GET", base, params=params), ("id", "label", "keyPrefix", "createdAt"))
    elif args.action == "create":
        body: dict[str, Any] = {"label": args.label}
        if admin:
            body["tenant"] = args.tenant
        made = api.call("POST", base, json=body)
        console.print(f"API key {made['id']} of tenant [bold]{made['tenantId']}[/bold]:")
        console.out(made["key"], highlight=False)  # alone on its line, for scripts
        console.print("[yellow]Store it now: it is not shown again.[/yellow]", style=None)
    else:
        if not args.id:
            raise SystemExit("error: revoke needs the key's id (see `ash-ray keys list`)")
        api.call("DELETE", f"{base}/{args.id}", params=params)
        console.print(f"revoked {args.id}")
    return 0


def _read_secret(args: argparse.Namespace) -> str:
    if args.key_env:
        value = os.environ.get(args.key_env, "")
        if not value:
            raise SystemExit(f"error: ${args.key_env} is empty or unset")
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"{args.type} key: ")
    return sys.stdin.read().strip()


def cmd_credentials(args: argparse.Namespace) -> int:
    api = _api(args)
    console = Console()
    if args.action == "list":
        found = api.call("GET", "/api/credentials")["credentials"]
        _table(found, ("id", "type", "label", "baseUrl", "createdAt", "lastUsedAt"))
    elif args.action == "add":
        if args.type is None:
            raise SystemExit(f"error: add needs a type: one of {', '.join(CREDENTIAL_TYPES)}")
        body = {"type": args.type, "key": _read_secret(args), "label": args.label}
        if args.base_url:
            body["baseUrl"] = args.base_url
        made = api.call("POST", "/api/credentials", json=body)["credential"]
        console.print(f"credential {made['id']} ({made['type']}) stored")
        console.out(made["id"], highlight=False)
    else:
        if not args.id:
            raise SystemExit("error: delete needs the credential's id")
        api.call("DELETE", f"/api/credentials/{args.id}")
        console.print(f"deleted {args.id}")
    return 0


def add_tenant_parsers(sub: Any) -> None:
    """``keys list|create|revoke`` and ``credentials list|add|delete``."""
    k = sub.add_parser("keys", help="API keys of your tenant (or, as admin, of --tenant)")
    k.add_argument("action", choices=["list", "create", "revoke"])
    k.add_argument("id", nargs="?", help="the key to revoke")
    k.add_argument("--label")
    k.add_argument("--tenant", help="another tenant (needs ASH_API_KEY, the admin key)")
    k.set_defaults(func=cmd_keys)
    c = sub.add_parser("credentials", help="stored model keys (sealed; never shown again)")
    c.add_argument("action", choices=["list", "add", "delete"])
    c.add_argument("target", nargs="?", help="add: the type; delete: the id")
    c.add_argument("--label")
    c.add_argument("--base-url", help="a custom credential's Messages API endpoint")
    c.add_argument("--key-env", metavar="VAR", help="read the key from $VAR (else stdin)")
    c.set_defaults(func=_credentials_args)


def _credentials_args(args: argparse.Namespace) -> int:
    args.type = args.target if args.action == "add" else None
    args.id = args.target if args.action == "delete" else None
    if args.type is not None and args.type not in CREDENTIAL_TYPES:
        raise SystemExit(f"error: type must be one of {', '.join(CREDENTIAL_TYPES)}")
    return cmd_credentials(args)
