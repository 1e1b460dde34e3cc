"""The one exception type for errors a user can cause and fix.

The CLI prints its message on one line and exits with status 2; library users catch it.
Messages say what is wrong and what to do about it.
"""


class VaelabError(Exception):
    """A problem with user input: a bad flag or config, missing or corrupt data, a wrong run."""
