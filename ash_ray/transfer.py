"""``ash-ray session download|upload``: a session's whole workspace as tar.gz, with progress.

``download`` saves ``GET /api/sessions/{id}/workspace`` (live or from the snapshot);
``upload`` sends a ``.tar.gz`` file, or a folder packed on the fly (without ``.git``,
``node_modules``, caches and ``.env`` files), to ``POST /api/sessions/{id}/workspace``.
"""

from __future__ import annotations

import argparse
import base64
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from ash_ray.chat import Api, _api, _error_text, _progress, advice, download
from ash_ray.session.files import ALWAYS_SKIP, ENV_FILES

CHUNK = 256 * 1024


def download_workspace(api: Api, session_id: str, dest: Path, console: Console) -> Path:
    """Stream the workspace bundle into ``dest`` with a progress bar; returns ``dest``."""
    url = f"/api/sessions/{session_id}/workspace"
    return download(api, url, f"{session_id[:8]}.tar.gz", dest, console)


def pack_folder(folder: Path) -> bytes:
    """A folder as tar.gz, leaving out what a workspace bundle never carries."""
    buf = io.BytesIO()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        return None if name in ALWAYS_SKIP or name in ENV_FILES else info

    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return buf.getvalue()


def upload_workspace(api: Api, session_id: str, source: Path, console: Console) -> dict[str, Any]:
    """Send a .tar.gz (or a folder, packed) to the session's workspace, with progress."""
    data = pack_folder(source) if source.is_dir() else source.read_bytes()
    body = b'{"bundle": "' + base64.b64encode(data) + b'"}'
    url = f"/api/sessions/{session_id}/workspace"
    with _progress(console) as progress:
        task = progress.add_task(source.name, total=len(body))

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), CHUNK):
                piece = body[start:start + CHUNK]
                progress.advance(task, len(piece))
                yield piece

        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        try:
            resp = api.http.post(url, content=chunks(), headers=headers, timeout=300)
        except httpx.HTTPError as exc:
            raise SystemExit(api.unreachable(exc)) from None
    if resp.status_code >= 400:
        raise SystemExit(advice(resp.status_code, _error_text(resp), url))
    result: dict[str, Any] = resp.json()
    return result


def cmd_session_download(args: argparse.Namespace) -> int:
    console = Console()
    dest = Path(args.out or f"{args.id}.tar.gz")
    download_workspace(_api(args), args.id, dest, console)
    console.print(f"saved the workspace of {args.id} to {dest}")
    return 0


def cmd_session_upload(args: argparse.Namespace) -> int:
    console = Console()
    source = Path(args.source)
    if not source.exists():
        raise SystemExit(f"error: {source} does not exist (give a .tar.gz file or a folder)")
    result = upload_workspace(_api(args), args.id, source, console)
    console.print(f"{result.get('message', 'uploaded')} ({result.get('entries', '?')} entries)")
    return 0


def add_transfer_parsers(ssub: Any) -> None:
    """``ash-ray session download|upload`` on the ``session`` subcommands."""
    d = ssub.add_parser("download", help="save the session's workspace as a .tar.gz")
    d.add_argument("id")
    d.add_argument("-o", "--out", help="where to save it (default: ID.tar.gz, here)")
    d.set_defaults(func=cmd_session_download)
    u = ssub.add_parser("upload", help="unpack a .tar.gz or a folder into the workspace")
    u.add_argument("id")
    u.add_argument("source", help="a .tar.gz file or a folder")
    u.set_defaults(func=cmd_session_upload)
