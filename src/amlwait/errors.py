"""Every error amlwait reports to a user, and the exit code it maps to.

::

    AmlwaitError                 one clear line; ``exit_code`` for the CLI
    ├── InputError (2)           bad manifest, bad flag value, bad configuration
    │   └── ManifestError (2)    the manifest, with the file and the entry at fault
    ├── AuthenticationError (2)  no credential, or the service refused it
    └── ServiceError (2)         Azure ML kept failing (after retries) or refused a request
        └── ListingError (2)     a listing was unusable (a nextLink loop, too many pages);
                                 the waiter reads those jobs one by one instead

Each carries the context a user needs (the file, the job, the HTTP status) in its
message; none ever carries a token.
"""

from __future__ import annotations

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130


class AmlwaitError(Exception):
    """Base of amlwait's errors; ``str(error)`` is the one line shown to the user."""

    exit_code = EXIT_BAD_INPUT


class InputError(AmlwaitError):
    """The user's input or configuration is wrong; nothing was waited for."""


class ManifestError(InputError):
    """The job manifest cannot be used."""


class AuthenticationError(AmlwaitError):
    """No usable credential, or Azure refused the one given."""


class ServiceError(AmlwaitError):
    """Azure ML (or the local workspace) kept failing, or refused a request for good."""

    def __init__(self, message: str, *, status_code: int | None = None, job: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.job = job


class ListingError(ServiceError):
    """A LIST of jobs could not be used (its ``nextLink`` repeats a page, or it passed the
    page or job cap). An error of that listing only: its jobs are read one by one."""
