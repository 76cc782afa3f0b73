"""Errors that reach the user as one clear line (exit code 2, no traceback)."""

from __future__ import annotations

import argparse
from typing import NoReturn

#: Hints of Hydra and OmegaConf that `one_line` leaves out of a message.
_NOISE = (
    "To append to your config",
    "full_key:",
    "reference_type",
    "object_type",
    "Set the environment variable",
    "Config search path",
    "Available options",
)


def one_line(exc: BaseException) -> str:
    """The messages of ``exc`` and its causes on one line, without Hydra's hints."""
    kept: list[str] = []
    cause: BaseException | None = exc
    while cause is not None:
        for ln in (x.strip() for x in str(cause).splitlines()):
            if ln and not ln.startswith(_NOISE) and ln not in kept:
                kept.append(ln)
        cause = cause.__cause__
    return "; ".join(kept) or "invalid value"


class NasError(Exception):
    """Base class for user-facing errors: the message says what was wrong and what is valid."""


class ConfigError(NasError):
    """A configuration value, name or file is not valid."""


class ProfileError(ConfigError):
    """A hardware profile file is malformed; the message names the file and the field."""


class GraphError(NasError):
    """A candidate network uses an operator or shape the graph description cannot express."""


class TrialError(NasError):
    """A trial failed for a reason worth recording (diverged training, missing quantization)."""


def check_option(option: str, value: object, ok: bool, valid: str) -> None:
    """A plugin option's range check (call it in the ``Config``'s ``__post_init__``, so a
    bad value stops the command before anything runs): one line naming the option."""
    if not ok:
        raise ConfigError(f"{option}={value} is not valid; it must be {valid}")


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are a `ConfigError`: one line naming the
    argument, instead of the usage block and exit code 2 from argparse itself."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split()[-1]  # "python -m nas finalize": finalize
        raise ConfigError(f"{command}: {message}; see {self.prog} -h")
