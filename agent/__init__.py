"""The esup agent: runs beside one workflow system, reads its case events,
keeps live clocks and delivers every event to the server through a durable
outbox. It imports the shared `casework` package and never `server`."""
