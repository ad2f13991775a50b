"""The esup server: authenticated ingest, the event store, case state,
figures, scores, metrics and alerts. It imports the shared `casework` package
and never `agent`."""
