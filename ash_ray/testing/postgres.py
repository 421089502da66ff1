"""A real, throwaway Postgres cluster for tests and benchmarks.

``TempPostgres`` runs ``initdb`` and ``pg_ctl`` from the system's PostgreSQL (Debian's
``/usr/lib/postgresql/<v>/bin``, anything on ``PATH``, or ``$ASH_PG_BIN_DIR``), else
the binaries bundled in the ``pgserver`` wheel. It listens on 127.0.0.1 at a free port,
keeps everything in one temp dir, and removes both the process and the dir on
``stop()``, on ``__exit__`` and at interpreter exit. Postgres refuses to run as root, so
as root the cluster runs as the ``postgres`` user (created if missing)::

    with TempPostgres() as pg:
        store = PostgresStore(pg.url)
        pg.restart()                     # same data, same port
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL binaries, or the cluster would not start (reason in message)."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; newest system first."""
    candidates: list[Path] = []
    if os.environ.get("ASH_PG_BIN_DIR"):
        candidates.append(Path(os.environ["ASH_PG_BIN_DIR"]))

    def version(path: Path) -> float:
        try:
            return float(path.parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for cand in candidates:
        if all((cand / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return cand
    raise PostgresUnavailable(
        "no PostgreSQL binaries found (looked in $ASH_PG_BIN_DIR, /usr/lib/postgresql/*/bin, "
        "PATH and the pgserver wheel); install the `postgresql` package or `pip install pgserver`"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    # A private loop in a thread works whether or not the caller runs an event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _service_user() -> pwd.struct_passwd | None:
    """The account to run Postgres as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("postgres")


class TempPostgres:
    """One throwaway Postgres cluster on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        database: str = "ash",
        durable: bool = False,
        bin_dir: Path | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        """``durable=False`` turns fsync off: fast, and still safe across ``restart()``."""
        self.database = database
        self.durable = durable
        self.bin_dir = bin_dir
        self.start_timeout_s = start_timeout_s
        self.host = "127.0.0.1"
        self.port = 0
        self.tmp: Path | None = None
        self._user: pwd.struct_passwd | None = None
        self._running = False

    # ------------------------------------------------------------ urls

    def url_for(self, database: str) -> str:
        """Connection URL of ``database`` on this cluster (user postgres, trust auth)."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}?sslmode=disable"

    @property
    def url(self) -> str:
        """URL of the database created at start."""
        return self.url_for(self.database)

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` maintenance database."""
        return self.url_for("postgres")

    @property
    def data_dir(self) -> Path:
        assert self.tmp is not None, "TempPostgres is not started"
        return self.tmp / "data"

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None, "TempPostgres is not started"
        return self.tmp / "postgres.log"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> TempPostgres:
        """initdb, start on a free port, create ``database``; raises PostgresUnavailable."""
        if self.tmp is not None:
            return self
        bin_dir = self.bin_dir or find_bin_dir()
        self.bin_dir = bin_dir
        self._user = _service_user()
        self.tmp = Path(tempfile.mkdtemp(prefix="ash-pg-"))
        atexit.register(self.stop)
        try:
            if self._user is not None:
                os.chown(self.tmp, self._user.pw_uid, self._user.pw_gid)
                if not _reachable(bin_dir):
                    self.bin_dir = self._private_copy(bin_dir)
            self._pg(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            for attempt in range(3):
                self.port = free_port(self.host)
                self._configure()
                try:
                    self._start_server()
                    break
                except PostgresUnavailable:
                    # Someone took the port between free_port() and bind(): try another.
                    if attempt == 2 or "already in use" not in self._log_tail():
                        raise
            _run_async(self._admin(f'CREATE DATABASE "{self.database}"'))
        except BaseException:
            self.stop()
            raise
        logger.info("throwaway postgres at %s (data in %s)", self.url, self.tmp)
        return self

    def restart(self) -> None:
        """Stop (fast shutdown) and start again: same data, same port."""
        self._stop_server()
        self._start_server()

    def stop(self) -> None:
        """Stop the server and remove its temp dir; safe to call again."""
        if self.tmp is None:
            return
        try:
            self._stop_server()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
            atexit.unregister(self.stop)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ databases

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database (``test_<random>`` by default); return its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        _run_async(self._admin(f'CREATE DATABASE "{name}"'))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting anyone still using it."""
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        _run_async(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=30)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # ------------------------------------------------------------ plumbing

    def _configure(self) -> None:
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text().split("# --- ash-ray ---")[0]
        extra = [
            "# --- ash-ray ---",
            f"listen_addresses = '{self.host}'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.tmp}'",
            "max_connections = 200",
            "shared_buffers = 32MB",
            f"fsync = {'on' if self.durable else 'off'}",
            f"full_page_writes = {'on' if self.durable else 'off'}",
        ]
        conf.write_text(text + "\n".join(extra) + "\n")

    def _start_server(self) -> None:
        self._running = True  # from here on stop() must try, even if pg_ctl times out
        try:
            self._pg(
                "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path),
                "-w", "-t", str(int(self.start_timeout_s)), "start",
            )  # fmt: skip
        except PostgresUnavailable as exc:
            raise PostgresUnavailable(f"{exc}\n--- server log ---\n{self._log_tail()}") from None

    def _stop_server(self) -> None:
        if not self._running or self.tmp is None:
            return
        try:
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")
        except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
            logger.warning("pg_ctl stop failed (%s); killing the postmaster", exc)
            self._kill()
        self._running = False

    def _kill(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _pg(self, exe: str, *args: str) -> None:
        assert self.bin_dir is not None and self.tmp is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=str(self.tmp), LC_ALL="C")
        user = self._user
        # Output goes to a file: a pipe would be inherited by the postmaster and never close.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(
                [str(self.bin_dir / exe), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                env=env,
                timeout=self.start_timeout_s + 30,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
            if proc.returncode != 0:
                out.seek(0)
                output = out.read().decode(errors="replace").strip()
                raise PostgresUnavailable(f"{exe} failed (exit {proc.returncode}): {output}")

    def _private_copy(self, bin_dir: Path) -> Path:
        # The pgserver wheel may live under /root (mode 700), out of the service user's
        # reach. Copy its install tree into our temp dir rather than opening up /root.
        # The copy keeps the layout <base>/pgserver/pginstall/bin next to
        # <base>/pgserver.libs, where the binaries' $ORIGIN rpath finds libpq.
        assert self.tmp is not None and self._user is not None
        base, root = bin_dir.parents[2], self.tmp / "pg"
        shutil.copytree(
            bin_dir.parent,
            root / bin_dir.parent.relative_to(base),
            symlinks=True,
            ignore=shutil.ignore_patterns("include"),
        )
        for libs in base.glob(f"{bin_dir.parents[1].name}*.libs"):
            shutil.copytree(libs, root / libs.name, symlinks=True)
        for top, dirs, names in os.walk(root):
            for name in [*dirs, *names, "."]:
                os.lchown(Path(top, name), self._user.pw_uid, self._user.pw_gid)
        return root / bin_dir.relative_to(base)


def _reachable(path: Path) -> bool:
    """Whether any user may traverse to ``path`` (every ancestor has o+x)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def main() -> None:
    """``python -m ash_ray.testing.postgres``: serve a throwaway cluster until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with TempPostgres() as pg:
        logger.info("postgres ready: %s  (Ctrl-C to stop and delete)", pg.url)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
