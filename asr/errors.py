"""The exception types the command line turns into a one-line message and a non-zero exit."""


class InputError(Exception):
    """Bad user input: a missing or unreadable file, a malformed manifest, an invalid option.

    The message must name the file (or option) and the problem in one line; the command line
    prints it as ``error: <message>`` without a traceback. Anything else that escapes is a bug.
    """


class InstallError(Exception):
    """Installed packages that cannot work together, such as a torchaudio built for another torch.

    Not the user's input, so not an `InputError`, but reported the same way: one line that says what to
    install, a non-zero exit, no traceback.
    """
