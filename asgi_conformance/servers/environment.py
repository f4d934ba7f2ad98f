"""Where a server comes from before anything is started: addresses the environment gives,
and the machine's binaries (with the one-line hint to install what is missing)."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

from .handles import ServerError

INSTALL_HINT = "ci/install-servers.sh"


def urls_from_env(name: str, schemes: tuple[str, ...]) -> list[str]:
    """The comma-separated URLs in the environment variable ``name``; each must use one of ``schemes``.

    An address given here (CI service containers, a developer's running server) means nothing
    is started; such a server cannot be restarted by the tests.
    """
    urls = [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]
    for url in urls:
        if urlsplit(url).scheme not in schemes:
            raise ServerError(f"{name}: {url!r} is not a {' / '.join(s + '://' for s in schemes)} URL")
    return urls


def find_binary(name: str, package: str, search_path: str | None = None) -> str:
    """The path of ``name`` (in PATH, or in ``search_path``), or a ServerError naming the Debian package."""
    found = shutil.which(name, path=search_path)
    if found is None:
        where = search_path or "PATH"
        raise ServerError(f"{name} not found in {where}: install the Debian package {package} "
                          f"(apt-get install {package}) or run {INSTALL_HINT}")
    return found
