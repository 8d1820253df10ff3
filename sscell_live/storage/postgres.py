"""A throw-away PostgreSQL cluster on loopback, for tests and demos of the PostgreSQL catalog.

A site runs its own PostgreSQL server; this starts Debian's server binaries
(``apt-get install postgresql``: ``/usr/lib/postgresql/<version>/bin``) in a
folder, on a free loopback port, with ``trust`` authentication for one
database user, so that :class:`~sscell_live.storage.TiledServer` can be
pointed at it (``catalog_uri=pg.catalog_uri``).

``initdb`` and ``postgres`` refuse to run as root: when this process is
root, every server command runs as the unprivileged ``postgres`` account
(``runuser -u postgres --``) and the cluster folder is handed to it.

Example
-------
>>> with LocalPostgres() as pg:                                          # doctest: +SKIP
...     with TiledServer("runs/tiled-pg", catalog_uri=pg.catalog_uri,
...                      table_storage_uri=pg.storage_uri) as server:
...         ...
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .server import free_port

__all__ = ["LocalPostgres", "find_postgres_bin"]

#: Where ``apt-get install postgresql`` puts the server binaries on Debian/Ubuntu.
DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"


def find_postgres_bin() -> Path:
    """Folder holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Looks at ``$SSCELL_PG_BIN``, then Debian's ``/usr/lib/postgresql/<newest>/bin``,
    then ``PATH``.

    Raises
    ------
    FileNotFoundError
        No PostgreSQL server binaries (install them: ``apt-get install -y postgresql``).
    """
    candidates = []
    if os.environ.get("SSCELL_PG_BIN"):
        candidates.append(Path(os.environ["SSCELL_PG_BIN"]))
    candidates += sorted((Path(p) for p in glob.glob(DEBIAN_GLOB)),
                         key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
                         reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for c in candidates:
        if all((c / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return c
    raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in $SSCELL_PG_BIN, "
                            f"{DEBIAN_GLOB} or PATH: install them (Debian: apt-get install -y postgresql)")


class LocalPostgres:
    """A PostgreSQL cluster in a folder, listening on 127.0.0.1 only.

    Parameters
    ----------
    directory : path, optional
        Cluster folder (created; must be reachable by the ``postgres``
        account when running as root). Default: a new temporary folder,
        removed by :meth:`stop`.
    port : int, optional
        TCP port; default a free one.
    database, user : str
        Database created at start, and the (superuser, trust-authenticated)
        role that owns it.
    bin_dir : path, optional
        Server binaries; default :func:`find_postgres_bin`.
    run_as : str, optional
        Account that runs the server; default ``postgres`` when this
        process is root, else the current user.

    Attributes
    ----------
    catalog_uri : str
        ``postgresql+asyncpg://user@127.0.0.1:port/database`` (Tiled catalog).
    storage_uri : str
        ``postgresql://user@127.0.0.1:port/database`` (Tiled table storage).
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, port: int | None = None,
                 database: str = "sscell", user: str = "tiled", bin_dir: str | os.PathLike | None = None,
                 run_as: str | None = None):
        self.bin_dir = Path(bin_dir) if bin_dir else find_postgres_bin()
        self._own_dir = directory is None
        self.directory = Path(directory).resolve() if directory else None
        self.port = int(port) if port else None
        self.database, self.user = database, user
        self.run_as = run_as if run_as is not None else ("postgres" if os.geteuid() == 0 else None)
        self._running = False

    @property
    def catalog_uri(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def storage_uri(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _cmd(self, exe: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / exe), *args]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def _run(self, exe: str, *args: str, timeout: float = 120.0) -> str:
        proc = subprocess.run(self._cmd(exe, *args), capture_output=True, text=True, timeout=timeout,
                              cwd=self.directory)
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} {' '.join(args)} failed (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc.stdout

    def start(self) -> LocalPostgres:
        """initdb, start the server (waits until it accepts connections), create the database."""
        if self._running:
            return self
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="sscell-pg-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.run_as and os.geteuid() == 0:
            shutil.chown(self.directory, user=self.run_as)
        if self.port is None:
            self.port = free_port()
        data = self.directory / "data"
        if not (data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-locale")
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.directory / "server.log"), "-w",
                  "-t", "60", "start")
        self._running = True
        try:
            exists = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
                               "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
            if exists.strip() != "1":
                self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown); remove the folder if it was a temporary one."""
        if self._running:
            self._running = False
            try:
                self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")
            except RuntimeError:
                pass  # already gone
        if self._own_dir and self.directory is not None and self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
