"""The one thing pyproject.toml cannot say: the IPC layer's optional C hot path.

``optional=True``: where there is no C compiler the build goes on without it, and the layer
runs its pure-Python hot path (``reference_layers/ipc/hotpath.py``).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("reference_layers.ipc._hotcore", ["reference_layers/ipc/_hotcore.c"],
                             extra_compile_args=["-O2"], optional=True)])
