"""Errors a user can act on: the command-line jobs print them as one line (``--debug`` shows
the traceback) and exit with code 2; anything else is a bug and keeps its traceback."""
from __future__ import annotations


class UserError(Exception):
    """A problem with what was asked for (arguments, inputs, environment), not with the code."""


class ConfigError(UserError, ValueError):
    """A configuration value or key that cannot be used."""


class FolderBusy(UserError, RuntimeError):
    """Another run is writing to the same output folder."""


class DeviceUnavailable(UserError, RuntimeError):
    """The requested device or decoder is not available on this machine."""


__all__ = ["UserError", "ConfigError", "FolderBusy", "DeviceUnavailable"]
