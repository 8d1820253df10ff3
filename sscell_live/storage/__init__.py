"""Storage: the embedded Tiled server (SQLite or PostgreSQL catalog, local storage, API key) and writing runs to it.

:class:`TiledServer` starts ``tiled serve config`` on loopback from a config
file it writes (SQLite catalog by default, PostgreSQL with ``catalog_uri``;
writable and readable storage, API key, the bluesky-tiled-plugins json-seq
exporter for ``BlueskyRun``); :meth:`TiledServer.writer` gives a
``bluesky_tiled_plugins.TiledWriter`` (optionally on its own thread:
:class:`BackgroundWriter`). :func:`replay_backup` writes the runs a
TiledWriter backed up during a server outage. :class:`LocalPostgres` starts
a throw-away PostgreSQL cluster (tests, demos).
"""

from .backup import ReplayedRun, read_backup, replay_backup
from .postgres import LocalPostgres, find_postgres_bin
from .server import JSON_SEQ_EXPORTER, TiledServer, write_config
from .writing import BackgroundWriter

__all__ = ["JSON_SEQ_EXPORTER", "BackgroundWriter", "LocalPostgres", "ReplayedRun", "TiledServer",
           "find_postgres_bin", "read_backup", "replay_backup", "write_config"]
