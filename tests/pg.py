"""A throwaway Postgres cluster for tests and benchmarks (not part of the package).

It runs the system's ``initdb``/``pg_ctl`` (Debian's ``postgresql``, which
``scripts/test.sh`` installs; ``$ASH_PG_BIN_DIR`` overrides) or, failing that, the
binaries of the ``pgserver`` wheel; listens on 127.0.0.1 at a free port with trust auth;
keeps everything in one temp dir that ``stop()`` deletes. Postgres refuses to run as
root, so as root it runs as the existing ``postgres`` (or ``nobody``) account::

    with TempPostgres() as pg:
        store = PostgresStore(pg.url)
        pg.restart()                     # same data, same port
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from ash_ray.testing.ports import free_port


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL binaries, or the cluster would not start (reason in message)."""


def _account() -> pwd.struct_passwd | None:
    """Whom Postgres runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither `postgres` nor `nobody` exists")


def find_bin_dir() -> Path:
    """The directory of ``initdb``, ``pg_ctl`` and ``psql``; the newest system one first."""
    found = [Path(os.environ["ASH_PG_BIN_DIR"])] if os.environ.get("ASH_PG_BIN_DIR") else []
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)[::-1]
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        found.append(Path(spec.origin).parent / "pginstall" / "bin")
    user = _account()
    for bin_dir in found:
        if not all((bin_dir / exe).is_file() for exe in ("initdb", "pg_ctl", "psql")):
            continue
        # Another account must be able to reach the binaries (the wheel may sit in /root).
        if user is None or all(p.stat().st_mode & 0o001 for p in (bin_dir, *bin_dir.parents)):
            return bin_dir
    raise PostgresUnavailable(
        f"no PostgreSQL binaries usable by {user.pw_name if user else 'us'} in "
        f"{[str(p) for p in found]}: install Debian's `postgresql` (scripts/test.sh does)"
    )


class TempPostgres:
    """One throwaway cluster (see the module docstring)."""

    def __init__(self, *, database: str = "ash", durable: bool = False) -> None:
        """``durable=False`` turns fsync off: fast, and still safe across ``restart()``."""
        self.database = database
        self.durable = durable
        self.port = 0
        self.tmp: Path | None = None
        self._bin = Path()
        self._user = _account()

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    @property
    def url(self) -> str:
        """URL of the database created at start."""
        return self.url_for(self.database)

    def start(self) -> TempPostgres:
        """initdb, start on a free port, create ``database``; raises PostgresUnavailable."""
        self._bin = find_bin_dir()
        self.tmp = Path(tempfile.mkdtemp(prefix="ash-pg-"))
        try:
            if self._user is not None:
                os.chown(self.tmp, self._user.pw_uid, self._user.pw_gid)
            self._run("initdb", "-D", str(self.tmp / "data"), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip
            for attempt in range(3):  # someone may take the free port before we bind it
                self.port = free_port()
                try:
                    self._pg_ctl("start")
                    break
                except PostgresUnavailable:
                    if attempt == 2:
                        raise
            self._sql(f'CREATE DATABASE "{self.database}"')
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> None:
        """Fast shutdown and start again: same data, same port."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        """Stop the server and delete its files; safe to call again."""
        if self.tmp is None:
            return
        try:
            if (self.tmp / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.tmp / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self._sql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` (a name from create_database), disconnecting its users."""
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _pg_ctl(self, action: str) -> None:
        fsync = "on" if self.durable else "off"
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.tmp} "
            f"-c max_connections=200 -c fsync={fsync} -c full_page_writes={fsync}"
        )
        assert self.tmp is not None
        self._run("pg_ctl", "-D", str(self.tmp / "data"), "-l", str(self.tmp / "postgres.log"),
                  "-m", "fast", "-w", "-t", "60", "-o", options, action)  # fmt: skip

    def _sql(self, sql: str) -> None:
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql)  # fmt: skip

    def _run(self, exe: str, *args: str) -> None:
        assert self.tmp is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=str(self.tmp), LC_ALL="C")
        user = self._user
        # Output to a file: a pipe would be inherited by the postmaster and never close.
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(
                [str(self._bin / exe), *args], stdout=out, stderr=subprocess.STDOUT,
                cwd=self.tmp, env=env, timeout=120,
                user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )  # fmt: skip
            if done.returncode != 0:
                out.seek(0)
                log = self.tmp / "postgres.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise PostgresUnavailable(
                    f"{exe} failed ({done.returncode}): {out.read().decode(errors='replace')}"
                    f"\n{tail}"
                )
