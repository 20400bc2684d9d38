"""Waiting out a tracking store that is away for a while (a server restart, a network blip).

A run that is training keeps what it logs in the outbox (outbox.py). What cannot be kept, because
nothing exists yet to keep it in (a sweep's job creating its run, looking up what already finished,
the sweep command watching its runs and closing its parent), waits here for the store instead of
failing: a store that comes back within STORE_WAIT_SECONDS loses no run of a sweep.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, TypeVar

T = TypeVar("T")
STORE_WAIT_SECONDS = float(os.environ.get("BALANCE_LAB_STORE_WAIT", 300))
_RETRY_EVERY = 2.0


def store_is_away(exc: BaseException) -> bool:
    """A connection-level failure (refused, reset, timed out, a 5xx): not an answer the store gave."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    text = str(exc)
    if isinstance(exc, MlflowException):
        return any(s in text for s in ("Max retries exceeded", "Connection", "API request to", "503", "502", "504"))
    return type(exc).__module__.startswith(("requests", "urllib3")) and "Connection" in text + type(exc).__name__


def wait_for_store(call: Callable[[], T], what: str, limit: float = STORE_WAIT_SECONDS, say=None) -> T:
    """call(), retried every few seconds while the store is away, for at most `limit` seconds (then
    the last error is raised). One line says it waits; one says when it is back."""
    say = say or (lambda text: print(f"balance-lab: {text}", file=sys.stderr, flush=True))
    deadline, waited = time.monotonic() + limit, False
    while True:
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - only a store that is away is waited for
            if not store_is_away(exc) or time.monotonic() > deadline:
                raise
            if not waited:
                say(f"the tracking store does not answer ({what}); waiting up to {limit:.0f} s for it")
                waited = True
            time.sleep(_RETRY_EVERY)
            continue
        if waited:
            say(f"the tracking store is back ({what})")
        return result
