"""Errors that mean "the input is wrong", reported as one line with exit status 2."""


class ConfigError(ValueError):
    """A config value or option that cannot work; the message names it and the valid choices."""
