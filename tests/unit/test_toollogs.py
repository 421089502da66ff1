"""The tool log: ring buffer, index continued from the Store, saved in the background."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from ash_ray.records import LogLine
from ash_ray.sandbox.base import ExecResult
from ash_ray.session.toollogs import LogBook, LoggedSandbox
from ash_ray.transfer import pack_folder


class FakeStore:
    def __init__(self, stored: list[LogLine]) -> None:
        self.stored = stored

    async def save(self, lines: list[LogLine]) -> None:
        self.stored += lines

    async def last_index(self) -> int:
        return max((ln["index"] for ln in self.stored), default=-1)

    async def fetch(self, after: int, limit: int) -> list[LogLine]:
        return [ln for ln in self.stored if ln["index"] > after][:limit]


class EchoSandbox:
    """Only ``run`` is used here."""

    async def run(self, command: str, *, timeout_s: float | None = None,
                  cwd: str | None = None) -> ExecResult:
        return ExecResult(exit_code=3, stdout="a\nb\n", stderr="bad\n")


async def test_lines_continue_the_stored_log_and_are_saved() -> None:
    earlier: list[LogLine] = [
        {"index": i, "level": "system", "text": f"old {i}", "ts": "t"} for i in range(3)
    ]
    store = FakeStore(list(earlier))
    book = LogBook(10, store.save, store.last_index, store.fetch)
    sandbox = LoggedSandbox(EchoSandbox(), book)  # type: ignore[arg-type]
    result = await sandbox.run("make test")
    assert result.exit_code == 3
    await book.flush()
    new = [(ln["index"], ln["level"], ln["text"]) for ln in store.stored[3:]]
    assert new == [(3, "system", "$ make test"), (4, "stdout", "a"), (5, "stdout", "b"),
                   (6, "stderr", "bad"), (7, "system", "exit 3")]
    # older lines than this worker wrote come from the store, in order, no gaps
    assert [ln["index"] for ln in await book.since(0, 100)] == [1, 2, 3, 4, 5, 6, 7]
    assert [ln["index"] for ln in await book.since(5, 100)] == [6, 7]


async def test_the_ring_keeps_the_newest_lines() -> None:
    store = FakeStore([])
    book = LogBook(2, store.save, store.last_index, store.fetch)
    await LoggedSandbox(EchoSandbox(), book).run("x")  # type: ignore[arg-type]
    await book.flush()
    assert [ln["text"] for ln in book.lines] == ["bad", "exit 3"]
    assert len(store.stored) <= 5  # never more unsaved lines than the ring holds


def test_upload_packs_a_folder_without_secrets_or_vcs(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    (tmp_path / ".env").write_text("K=V")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("x = 1")
    with tarfile.open(fileobj=io.BytesIO(pack_folder(tmp_path)), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["src", "src/app.py"]
