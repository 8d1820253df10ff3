"""Storage: the embedded Tiled server (SQLite catalog, local storage, API key) and writing runs to it."""
