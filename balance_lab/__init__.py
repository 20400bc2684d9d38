"""balance-lab: load-balancing ablations of Mixture-of-Experts language models.

Kept import-free on purpose: `balance-lab --help` must not pay for torch or lightning.
"""

__version__ = "0.1.0"
