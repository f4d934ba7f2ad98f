"""The channel layer specification as tests: one module per area, each test tagged with the
requirement id it checks (see ``asgi_conformance.requirements``)."""
