"""The MLflow store and what watches it: how a run is recorded, kept alive, found and shown.

tracking.py    where the store is, run names, tags, a run's whole lifecycle (never left RUNNING)
outbox.py      metrics, tags and small artifacts kept while the store is away, spilled and replayed
liveness.py    who owns a RUNNING run (host, pid, heartbeat): what `runs --stale` decides on
runs.py        `balance-lab runs`: the latest runs, the stale ones, marking them KILLED
reachable.py   whether a tracking URI names a store a run could be recorded in

May import: the shared leaves (errors, console) only. Training, sweeps and reports build on it.
"""
