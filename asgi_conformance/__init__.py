"""asgi-conformance: the channel layer specification as a pytest plugin.

Run ``pytest --asgi-layer=package.module.LayerClass`` in any folder to check a layer.
"""

__version__ = "0.1.0"
