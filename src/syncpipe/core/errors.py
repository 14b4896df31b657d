"""Domain exceptions. Each carries the process exit code the CLI turns it into.

Exit codes (DESIGN.md): 0 success; 1 the job ran and found failures; 2 bad usage or
configuration; 3 the database could not be reached or a lock could not be had in time.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
#: Interrupted by the user (Ctrl-C), as shells report a process ended by SIGINT.
EXIT_INTERRUPTED = 130
#: Standard output closed by its reader (``syncpipe review | head``), as shells report a
#: process ended by SIGPIPE: the output was cut, which is not a failed job (1).
EXIT_READER_GONE = 141


class SyncpipeError(Exception):
    """Base class: a one-sentence message for a person, and an exit code."""

    exit_code = EXIT_USAGE


class ConfigError(SyncpipeError):
    """A setting, an environment file or a command-line value is wrong."""

    exit_code = EXIT_USAGE


class NotDeployedError(SyncpipeError):
    """The database lacks the objects a command needs: run `syncpipe deploy` first."""

    exit_code = EXIT_USAGE


class ConnectError(SyncpipeError):
    """The database server could not be reached or refused the login."""

    exit_code = EXIT_UNAVAILABLE
    #: The driver's reason, for a caller that says the loss in its own words.
    reason: str = ""


class LockTimeoutError(SyncpipeError):
    """Another session held a lock for longer than the lock timeout, or the job was rolled back
    to break a deadlock with it: running it again is the remedy."""

    exit_code = EXIT_UNAVAILABLE


class InterruptedByUser(SyncpipeError):
    """The user pressed Ctrl-C (SIGINT); the message says what was kept."""

    exit_code = EXIT_INTERRUPTED


class JobFailedError(SyncpipeError):
    """The job ran and failed (a SQL file failed, rows were rejected, a merge failed)."""

    exit_code = EXIT_FAILED


class ResourceError(JobFailedError):
    """A run exceeded the server's memory, disk or a configured limit (``temp_file_limit``,
    ``max_locks_per_transaction``); the message names the phase and the setting to change.

    Exit 1, like any job that ran and failed: the server was reached and no lock was waited
    for (exit 3 is for those), and running it again after the change is the remedy."""


class SqlFileError(JobFailedError):
    """A SQL file could not be read, was refused, or failed when applied."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.detail = message
