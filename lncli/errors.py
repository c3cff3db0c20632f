"""Exceptions that the CLI turns into one clear line and an exit code.

Library code raises :class:`LncliError` (or a subclass) for anything a user
caused: a bad file, an unknown name, an impossible setting. The CLI catches it,
prints ``error: <message>`` on stderr and exits 2. Programming errors stay
ordinary exceptions so that they keep their traceback.
"""

from __future__ import annotations


class LncliError(Exception):
    """A user-facing error: bad input, bad configuration, missing data. Exit code 2."""

    exit_code: int = 2


class CheckpointError(LncliError):
    """A file is not a usable lncli (or foreign) checkpoint."""


class DataError(LncliError):
    """A dataset cannot be found, read or matched to a model."""


class ConfigError(LncliError):
    """A configuration key or value is invalid."""


class OutputError(LncliError):
    """An output path cannot be written: a folder where a file goes, no permission, a wrong suffix, a clash."""
