"""User-facing errors.

Anything that is the user's input or environment (bad file, impossible parameter, missing model
while offline) raises a subclass of :class:`FoleykitError`. The CLI prints its message as one line
on stderr and exits 1 (3 for a model that is not available); a usage error (unknown command or option,
a malformed argument) is click's and exits 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FoleykitError(Exception):
    """An error caused by the input or the environment, with a message meant for the user."""

    exit_code: int = 1


class InputError(FoleykitError):
    """Unreadable, empty, absurd or otherwise unusable input (files, parameters)."""


class ModelNotAvailableError(FoleykitError):
    """A model could not be found locally and could not be downloaded."""

    exit_code = 3


class OutputError(FoleykitError):
    """The output path cannot be written, or would overwrite an input."""
