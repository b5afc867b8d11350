"""Exit codes and the one error base class. The bottom layer: imports nothing of llmcap's.

Every error llmcap raises on purpose is an `LlmcapError` and carries the exit code it ends
the process with; its message is one line that names the file, field, line or URL at fault.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # a sustained rate was found and confirmed, or a fixed-rate run did not fail its SLO
    FAILED = 1  # anything else: a server that would not start, a bug
    BAD_INPUT = 2  # a profile, dataset, argument or server address that cannot be used
    NO_CAPACITY = 3  # even the search's floor rate fails the SLO, or a fixed rate failed it with confidence
    GENERATOR_BOTTLENECK = 4  # the load generator could not keep its schedule: no server verdict
    INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it)


class LlmcapError(Exception):
    """Base of llmcap's own errors; `exit_code` is what the process exits with."""

    exit_code: ExitCode = ExitCode.FAILED


class BadInput(LlmcapError):
    """Input that cannot be used: printed as one line, exit code 2."""

    exit_code = ExitCode.BAD_INPUT


class ProfileError(BadInput):
    """A profile (or a setting given on the command line) that is wrong."""


class DatasetError(BadInput):
    """A dataset file that cannot be read as its task's records."""


class ServerUnreachable(BadInput):
    """The server under test is not there, or is not an OpenAI-compatible server serving the model."""
