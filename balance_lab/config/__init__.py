"""Configuration: Hydra composition of conf/ and the checks every value passes before a run exists.

paths.py       where conf/ and sweeps/ are (source checkout or wheel)
resolvers.py   the OmegaConf resolvers the YAML files use
compose.py     conf/ + overrides -> a config, Hydra's errors turned into one line
validation.py  every value checked (one-line ConfigError naming key, bad value, valid choices),
               the tracking store reachable

May import: the shared leaves, model/, balancing/ and data/ (for their own checks) and
store/ (is the tracking URI a store?). Training, sweeps and the cli build on it.
"""
