"""The one exception type for bad user input.

Every reader and every CLI entry point raises :class:`InputError` with a one-line message that
names the offending file (or option) and what is wrong with it; ``pixeldrl.cli.main`` prints it
and exits with status 2 instead of showing a traceback.
"""


class InputError(Exception):
    """Bad user input: a missing, unreadable or inconsistent file, or an invalid option."""
