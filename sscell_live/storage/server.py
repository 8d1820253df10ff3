"""An embedded Tiled server on loopback, started from a config file.

The server is a separate process (``tiled serve config``) so that serving
HTTP never competes with the RunEngine for the GIL. Its configuration is
written next to its data so that the same folder can be served again
later, by hand or by :class:`TiledServer`:

- catalog: SQLite (``catalog.db``), created on first use; or, to scale
  beyond one machine, a PostgreSQL database (``catalog_uri``, below);
- ``writable_storage``: a ``data/`` folder (arrays TiledWriter writes) and a
  DuckDB file (tables: event data such as the potentiostat stream), or a
  PostgreSQL database for the tables (``table_storage_uri``);
- ``readable_storage``: folders the server may serve by reference, which must
  include every detector write directory (frames stay in the detector's
  HDF5 files, registered by reference);
- a single-user API key;
- the ``application/json-seq`` exporter of bluesky-tiled-plugins registered
  for the ``BlueskyRun`` spec, so that ``run.documents()`` works on the
  client (``SimpleTiledServer`` does not register it).

Example
-------
>>> with TiledServer("runs/tiled", readable_storage=["runs/frames"]) as server:  # doctest: +SKIP
...     client = server.client()
...     writer = server.writer()        # a bluesky_tiled_plugins.TiledWriter

PostgreSQL
----------
SQLite holds one writer at a time on one machine. For a facility (several
beamlines or analysis nodes writing, a catalog that outlives a laptop),
point the catalog, and optionally the event tables, at PostgreSQL::

    TiledServer("runs/tiled", readable_storage=["runs/frames"],
                catalog_uri="postgresql+asyncpg://tiled:${TILED_PG_PASSWORD}@db.example:5432/sscell",
                table_storage_uri="postgresql://tiled:${TILED_PG_PASSWORD}@db.example:5432/sscell")

- ``catalog_uri`` is a SQLAlchemy URL with the ``asyncpg`` driver (the
  ``asyncpg`` package); the database must exist (``createdb sscell``) and
  the user must be able to create tables in it: the catalog's tables are
  created on first start (``init_if_not_exists``).
- ``table_storage_uri`` (optional; default the local DuckDB file) is a libpq
  URL *without* a driver suffix, used through ``adbc_driver_postgresql``.
  The two may name the same database.
- Keep passwords out of the config file: Tiled expands ``$VAR`` /
  ``${VAR}`` in its configuration from the server's environment, which
  :class:`TiledServer` passes on (set ``TILED_PG_PASSWORD`` before starting).
- Arrays TiledWriter writes stay in ``<directory>/data``; detector frames
  stay in their HDF5 files (registered by reference): both must be on
  storage every Tiled server of the site can read.

``sscell_live.storage.postgres.LocalPostgres`` starts a throw-away cluster
for tests and demos (``tests/test_postgres.py`` writes and replays an
experiment through it).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["JSON_SEQ_EXPORTER", "TiledServer", "free_port", "write_config"]

#: Import path of the exporter that makes ``BlueskyRun.documents()`` work.
JSON_SEQ_EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"

#: Seconds to wait for the server to answer ``/healthz``.
STARTUP_TIMEOUT_S = 60.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _yaml_list(items) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def write_config(directory: str | os.PathLike, *, readable_storage=(), api_key: str, host: str = "127.0.0.1",
                 port: int = 8000, catalog_uri: str | None = None, table_storage_uri: str | None = None) -> Path:
    """Write a Tiled server configuration for a storage folder.

    Parameters
    ----------
    directory : path
        Storage folder; the catalog (``catalog.db``), the DuckDB table
        storage and the ``data/`` array storage go in it.
    readable_storage : sequence of paths
        Extra folders the server may read by reference (detector write
        directories).
    api_key : str
        Single-user API key.
    host, port
        Where uvicorn listens.
    catalog_uri : str, optional
        Catalog database (SQLAlchemy URL); default
        ``sqlite:///<directory>/catalog.db``. PostgreSQL:
        ``postgresql+asyncpg://user[:password]@host:port/dbname``.
    table_storage_uri : str, optional
        Where tabular data (event streams) is written; default
        ``duckdb:///<directory>/storage.duckdb``. PostgreSQL:
        ``postgresql://user[:password]@host:port/dbname``.

    Returns
    -------
    Path
        The configuration file (``<directory>/config.yml``).
    """
    directory = Path(directory).resolve()
    (directory / "data").mkdir(parents=True, exist_ok=True)
    catalog = catalog_uri or f"sqlite:///{directory / 'catalog.db'}"
    tables = table_storage_uri or "duckdb:///" + str(directory / "storage.duckdb")
    _check_uri("catalog_uri", catalog, ("sqlite", "sqlite+aiosqlite", "postgresql+asyncpg"))
    _check_uri("table_storage_uri", tables, ("duckdb", "sqlite", "postgresql"))
    readable = [str(Path(p).resolve()) for p in readable_storage]
    for p in readable:
        Path(p).mkdir(parents=True, exist_ok=True)
    text = f"""# Tiled configuration written by sscell_live.storage.server
authentication:
  single_user_api_key: "{api_key}"
  allow_anonymous_access: false
trees:
  - path: /
    tree: catalog
    args:
      uri: "{catalog}"
      init_if_not_exists: true
      writable_storage: {_yaml_list([str(directory / 'data'), tables])}
      readable_storage: {_yaml_list(readable)}
media_types:
  BlueskyRun:
    application/json-seq: "{JSON_SEQ_EXPORTER}"
uvicorn:
  host: "{host}"
  port: {int(port)}
"""
    path = directory / "config.yml"
    path.write_text(text)
    return path


def _check_uri(what: str, uri: str, schemes) -> None:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in schemes:
        raise ValueError(f"{what} must start with one of {', '.join(s + '://' for s in schemes)}, got {uri!r}")
    if '"' in uri or "\n" in uri:
        raise ValueError(f"{what} must not contain quotes or newlines, got {uri!r}")


class TiledServer:
    """A Tiled server process on loopback with a clean start/stop lifecycle.

    Parameters
    ----------
    directory : path
        Storage folder (catalog, data, config, logs). Reused if it exists:
        runs written before are served again.
    readable_storage : sequence of paths
        Folders served by reference (the detector's write directory).
    api_key : str, optional
        Single-user API key; default a random 32-hex-digit key.
    port : int, optional
        TCP port; default a free one.
    host : str
        Bind address; loopback by default (the server is not meant to be
        reachable from the network).
    catalog_uri, table_storage_uri : str, optional
        PostgreSQL (or other) catalog and table storage instead of the
        folder's SQLite and DuckDB files; see :func:`write_config` and the
        module notes.

    Notes
    -----
    Starting takes about 10 s (Python imports and the catalog's
    migrations). Use it as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(self, directory: str | os.PathLike, *, readable_storage=(), api_key: str | None = None,
                 port: int | None = None, host: str = "127.0.0.1", catalog_uri: str | None = None,
                 table_storage_uri: str | None = None):
        self.directory = Path(directory).resolve()
        self.readable_storage = [Path(p).resolve() for p in readable_storage]
        self.api_key = api_key or secrets.token_hex(16)
        self.host = host
        self.port = int(port) if port else None
        self.catalog_uri = catalog_uri
        self.table_storage_uri = table_storage_uri
        self._process: subprocess.Popen | None = None
        self._log = None
        self.config_path: Path | None = None

    # -- lifecycle -----------------------------------------------------------------
    @property
    def uri(self) -> str:
        """Base URI of the server, ``http://host:port``."""
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> TiledServer:
        """Write the config, start the process and wait until it answers."""
        import httpx

        if self.running:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = write_config(self.directory, readable_storage=self.readable_storage,
                                        api_key=self.api_key, host=self.host, port=self.port,
                                        catalog_uri=self.catalog_uri, table_storage_uri=self.table_storage_uri)
        tiled = shutil.which("tiled", path=str(Path(sys.executable).parent)) or shutil.which("tiled")
        cmd = [tiled, "serve", "config", str(self.config_path)] if tiled else \
            [sys.executable, "-m", "tiled", "serve", "config", str(self.config_path)]
        self._log = open(self.directory / "server.log", "ab")
        env = {**os.environ, "TILED_SINGLE_USER_API_KEY": self.api_key}
        self._process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.directory)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(trust_env=False) as http:
            while True:
                if self._process.poll() is not None:
                    self._close_log()
                    tail = (self.directory / "server.log").read_text(errors="replace")[-3000:]
                    self._process = None
                    raise RuntimeError(f"Tiled server exited with code at start-up; log tail:\n{tail}")
                try:
                    if http.get(f"{self.uri}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"Tiled server did not answer within {timeout_s} s (log: "
                                       f"{self.directory / 'server.log'})")
                time.sleep(0.2)
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server process (terminate, then kill after ``timeout_s``)."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TiledServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):  # last resort: never leave a server process behind
        try:
            self.stop(timeout_s=2.0)
        except Exception:
            pass

    # -- clients -------------------------------------------------------------------
    def client(self, **kwargs):
        """A ``tiled.client`` for the root of the catalog (API key set)."""
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key, **kwargs)

    def writer(self, *, batch_size: int = 100, backup_directory: str | os.PathLike | None = None,
               background: bool = False):
        """A ``bluesky_tiled_plugins.TiledWriter`` writing into this server.

        Parameters
        ----------
        batch_size : int
            Events/StreamDatums gathered per write (1 writes each at once,
            slowly; TiledWriter flushes at every stop document anyway).
        backup_directory : path, optional
            Where TiledWriter backs up (JSON lines) runs it failed to write;
            :func:`sscell_live.storage.replay_backup` writes them later.
        background : bool
            Wrap the writer in a :class:`~sscell_live.storage.BackgroundWriter`
            (its own thread: the RunEngine never waits on Tiled, not even
            during an outage). Call its ``flush()`` before reading what was
            just written.
        """
        from bluesky_tiled_plugins import TiledWriter

        w = TiledWriter(self.client(), batch_size=batch_size,
                        backup_directory=None if backup_directory is None else str(backup_directory))
        if background:
            from .writing import BackgroundWriter

            return BackgroundWriter(w)
        return w
