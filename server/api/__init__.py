"""The server's HTTP routers: ingest (``/api/v1/events``) and health (``/healthz``, ``/readyz``)."""
