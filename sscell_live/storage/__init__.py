"""Storage: the embedded Tiled server (SQLite catalog, local storage, API key) and writing runs to it.

:class:`TiledServer` starts ``tiled serve config`` on loopback from a config
file it writes (SQLite catalog, writable and readable storage, API key, the
bluesky-tiled-plugins json-seq exporter for ``BlueskyRun``);
:meth:`TiledServer.writer` gives a ``bluesky_tiled_plugins.TiledWriter``.
"""

from .server import JSON_SEQ_EXPORTER, TiledServer, write_config

__all__ = ["JSON_SEQ_EXPORTER", "TiledServer", "write_config"]
