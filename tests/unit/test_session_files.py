"""Workspace file operations: confinement on read and write, listings, bundles both ways."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ash_ray.errors import InvalidInput, NotFound, PathOutsideWorkspace, PayloadTooLarge
from ash_ray.session import files
from ash_ray.session import workspace as snapshots

MiB = 1024 * 1024


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "index.js").write_text("x")
    (root / ".cache").mkdir()
    (root / ".cache" / "blob").write_text("c")
    (root / ".env").write_text("SECRET=1\n")
    (root / "run.pid").write_text("1")
    (tmp_path / "outside.txt").write_text("host secret\n")
    os.symlink(tmp_path / "outside.txt", root / "escape")
    os.symlink(tmp_path, root / "escape_dir")
    os.symlink("src/main.py", root / "inner_link")
    return root


def test_listing_skips_caches_sockets_and_links(ws: Path) -> None:
    paths = [f["path"] for f in files.list_files(ws)]
    assert paths == [".cache/blob", ".env", "src/main.py"]
    hidden_off = [f["path"] for f in files.list_files(ws, include_hidden=False)]
    assert ".cache/blob" not in hidden_off and "src/main.py" in hidden_off


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "src/../../outside.txt",
                                  "escape", "escape_dir/outside.txt", "a\x00b"])
def test_reads_and_writes_outside_are_refused(ws: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        files.read_file(ws, path, MiB)
    with pytest.raises(PathOutsideWorkspace):
        files.write_files(ws, [(path, b"pwned")])
    with pytest.raises(PathOutsideWorkspace):
        files.delete_file(ws, path)
    assert (ws.parent / "outside.txt").read_text() == "host secret\n"


def test_one_bad_path_refuses_the_whole_batch(ws: Path) -> None:
    with pytest.raises(PathOutsideWorkspace):
        files.write_files(ws, [("ok.txt", b"1"), ("../bad.txt", b"2")])
    assert not (ws / "ok.txt").exists()


def test_read_write_delete_roundtrip(ws: Path) -> None:
    results = files.write_files(ws, [("a/b.txt", b"hello"), (".DS_Store", b"x")], "out")
    assert results == [
        {"path": "out/a/b.txt", "written": True, "size": 5},
        {"path": "out/.DS_Store", "written": False, "error": "skipped (.DS_Store)"},
    ]
    data, info = files.read_file(ws, "out/a/b.txt", MiB)
    assert data == b"hello" and info["size"] == 5
    assert files.read_file(ws, "inner_link", MiB)[0] == b"print('hi')\n"  # a link inside is fine
    with pytest.raises(InvalidInput, match="over the 3-byte limit"):
        files.read_file(ws, "out/a/b.txt", 3)
    with pytest.raises(InvalidInput, match="directory"):
        files.delete_file(ws, "out/a")
    assert files.delete_file(ws, "out/a/b.txt") == "out/a/b.txt"
    with pytest.raises(NotFound):
        files.read_file(ws, "out/a/b.txt", MiB)


def test_bundle_leaves_out_env_files_caches_and_escaping_links(ws: Path, tmp_path: Path) -> None:
    data = files.bundle(ws, 10 * MiB)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert "src/main.py" in names and "inner_link" in names
    assert not names & {".env", "escape", "escape_dir", "node_modules", "node_modules/x"}
    target = tmp_path / "restored"
    target.mkdir()
    assert files.restore(target, data, 10 * MiB) == len(names)
    assert (target / "src" / "main.py").read_text() == "print('hi')\n"


def _tar_gz(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, body in members:
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.mark.parametrize("member", [
    (tarfile.TarInfo("../evil.txt"), b"x"),
    (tarfile.TarInfo("/abs/evil.txt"), b"x"),
    _link("up", "../../etc"),
    _link("abs", "/etc/passwd"),
])
def test_restore_refuses_escaping_bundles_before_writing(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes]
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    data = _tar_gz((tarfile.TarInfo("fine.txt"), b"ok"), member)
    with pytest.raises(PathOutsideWorkspace, match="bundle rejected"):
        files.restore(root, data, MiB)
    assert list(root.iterdir()) == []  # nothing written, not even the fine entry
    assert not (tmp_path / "evil.txt").exists()


def test_restore_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        files.restore(tmp_path, b"", MiB)
    with pytest.raises(InvalidInput, match="not gzip"):
        files.restore(tmp_path, b"PK\x03\x04 a zip", MiB)
    with pytest.raises(InvalidInput, match=r"not a readable tar\.gz"):
        files.restore(tmp_path, b"\x1f\x8b\x08garbage", MiB)
    with pytest.raises(PayloadTooLarge):
        files.restore(tmp_path, b"\x1f\x8b" + b"0" * 2048, 1024)
    bomb = _tar_gz((tarfile.TarInfo("zeros"), bytes(20 * 1024)))
    with pytest.raises(PayloadTooLarge, match="unpacks to more than"):
        files.restore(tmp_path, bomb, 2048)


def test_cold_operations_run_on_the_snapshot(ws: Path) -> None:
    snap = snapshots.archive(ws)
    listing, unchanged = files.on_snapshot(snap, files.list_files, True)
    assert "src/main.py" in [f["path"] for f in listing] and unchanged is None
    _, new = files.on_snapshot(snap, files.write_files, [("new.txt", b"cold")], ".", mutates=True)
    assert new is not None
    data, _ = files.on_snapshot(new, files.read_file, "new.txt", MiB)[0]
    assert data == b"cold"
