"""The esup agent: runs beside one workflow system, reads its case events,
keeps live clocks and delivers every event to the server through a durable
outbox. It imports the shared `casework` package and never `server`."""

import sys

# httpx imports its command-line interface when rich and click are installed (they
# are: the `esup` command uses rich), which costs a running agent about 5 MB of
# resident memory for a CLI it never runs. A None entry makes that one optional
# import fail, and httpx falls back to a stub (see docs/agent-monitoring.md).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
