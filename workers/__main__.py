"""``python -m workers``: run the deal worker with the ``QTC_*`` settings (``qtc worker`` does the
same through the CLI)."""

import asyncio
import sys

from runtime.logging import configure_logging
from runtime.settings import get_settings
from workers.main import WorkerStartError, run_worker

if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        asyncio.run(run_worker(settings))
    except WorkerStartError as exc:
        print(f"qtc worker: {exc}", file=sys.stderr)
        sys.exit(1)
