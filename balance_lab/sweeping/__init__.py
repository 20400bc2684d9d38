"""`balance-lab sweep`: expand an ablation grid, record it in MLflow, launch it through Hydra.

May import config/ (composing and checking every point), store/ (the parent run, the children's
statuses) and the layers below; never training/ (each run trains in its own process) or report/.
"""
