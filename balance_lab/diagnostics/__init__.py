"""What a run records about its routing beyond its metrics: every step's expert loads (load_history.py)
and, on request, a routing trace of sampled tokens (trace.py); args.py reads their config block and
artifacts.py writes both into the run."""
