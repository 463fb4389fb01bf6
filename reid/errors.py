"""The one error type for bad input: data, params or files that the user can fix.

A stage prints an `InputError` (and a missing input file) as one line naming the file, row or
key and exits 1; any other exception is a bug or an environment failure (CUDA out of memory,
a crash in a library) and keeps its traceback.
"""


class InputError(ValueError):
    """Bad data, params or files, described well enough to fix them from the message alone."""
