"""`balance-lab sweep`: expand an ablation grid, record it in MLflow, launch it through Hydra."""
