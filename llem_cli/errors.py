"""The one error hierarchy of llem, mapped to the exit codes of docs/design.md §3.2.

Every error a user can cause is raised as a subclass of :class:`LlemError`; the
handler in :mod:`llem_cli.error_handler` prints its message as one line and exits with its
``exit_code``. Nothing here imports anything heavy: it is loaded on every start.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_ABORTED = 4
EXIT_LOCKED = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class LlemError(Exception):
    """An expected failure: one line for the user, a documented exit code."""

    exit_code = EXIT_SOME_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message as printed: what went wrong, then how to fix it."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageProblem(LlemError):
    """Bad command-line usage or an invalid campaign file (exit 2)."""

    exit_code = EXIT_USAGE


class CampaignInvalid(UsageProblem):
    """A campaign file failed validation; ``problems`` holds every formatted line."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class EnvironmentProblem(LlemError):
    """Docker, Compose or the daemon is missing or unreachable (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class RunAborted(LlemError):
    """The run was stopped by policy: restart budget spent, GPU lost (exit 4)."""

    exit_code = EXIT_ABORTED


class LockHeld(LlemError):
    """Another run holds this campaign's lock (exit 75)."""

    exit_code = EXIT_LOCKED


class Interrupted(LlemError):
    """A signal stopped the run after teardown (exit 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
