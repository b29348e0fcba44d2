"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class InputError(Exception):
    """Bad user input: a missing or unreadable file, a malformed manifest, an invalid option.

    The message must name the file (or option) and the problem in one line; the command line
    prints it as ``error: <message>`` without a traceback. Anything else that escapes is a bug.
    """
