"""The one exception type for errors a user can cause and fix.

The CLI prints its message on one line and exits with status 2; library users catch it.
Messages say what is wrong and what to do about it.
"""


class VaelabError(Exception):
    """A problem with user input: a bad flag or config, missing or corrupt data, a wrong run."""


class TrainingInterrupted(Exception):
    """Training stopped at the user's request (Ctrl-C); the message says what was kept and how to
    continue. Not an error: the CLI exits with 130."""
