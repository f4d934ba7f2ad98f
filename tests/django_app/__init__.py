"""A small Django project that uses a channel layer the way real Channels apps do.

It exists to prove our reference layers are drop-in ``CHANNEL_LAYERS`` backends: the layer
is chosen by environment variables (see settings.py), so the same project runs in-process
under ``channels.testing`` and as separate daphne / runworker processes on any layer.
"""
