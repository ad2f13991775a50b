"""The case-work domain shared by esup's agent and server.

Wire-format events, the Chinese working-day calendar, the case clock and its
levels, and the deployment's configuration (departments, catalog, calendar).
Nothing here does I/O except `configfiles.load_config`, which reads YAML files.
"""
