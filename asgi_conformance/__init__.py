"""asgi-conformance: the channel layer specification as a pytest plugin.

Run ``pytest --asgi-layer=package.module.LayerClass`` in any folder to check a layer.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # The version lives in pyproject.toml alone; the installed metadata carries it here.
    __version__ = version("asgi-conformance")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
