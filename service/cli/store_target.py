"""The Redis a command-line tool works on: the configured URL, or the embedded one `serve` started."""

from __future__ import annotations

import pathlib
from typing import Any

from cache.store import Store, connect

EMBEDDED_URL_FILE = "redis.url"


class NoStore(Exception):
    """Nothing configured and no embedded Redis running."""


def store_from(settings: dict[str, Any]) -> Store:
    url = settings["redis_url"]
    if not url:
        url_file = pathlib.Path(settings["data_dir"]) / "redis" / EMBEDDED_URL_FILE
        if not url_file.exists():
            raise NoStore("no Redis configured: set GATEKEEPER_REDIS_URL, or start `gatekeeper serve` first")
        url = url_file.read_text().strip()
    return Store(connect(url))
