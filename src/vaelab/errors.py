"""The one exception type for errors a user can cause and fix.

The CLI prints its message on one line and exits with status 2; library users catch it.
Messages say what is wrong and what to do about it.
"""

import numbers


class VaelabError(Exception):
    """A problem with user input: a bad flag or config, missing or corrupt data, a wrong run."""


class TrainingInterrupted(Exception):
    """Training stopped at the user's request (Ctrl-C); the message says what was kept and how to
    continue. Not an error: the CLI exits with 130."""


def require_count(n: object, name: str, minimum: int = 1) -> None:
    """A count the Python API was given (samples, images, k): a whole number of at least
    `minimum`, else one VaelabError that names the argument."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < minimum:
        raise VaelabError(f"{name} must be a whole number of at least {minimum}, got {n!r}")
