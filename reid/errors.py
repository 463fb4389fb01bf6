"""The one error type for bad input: data, params or files that the user can fix.

A stage or command prints an `InputError` (and a missing input file) as one line naming the
file, row or key and exits 1; any other exception is a bug or an environment failure (CUDA out
of memory, a crash in a library) and keeps its traceback.
"""

from __future__ import annotations

import re


class InputError(ValueError):
    """Bad data, params or files, described well enough to fix them from the message alone."""


def one_line(err: BaseException) -> str:
    """The message of an expected error on one line.

    A DataLoader worker's error comes back as "Caught InputError in DataLoader worker process
    0. Original Traceback ...", the original message on its last line: keep only that.
    """
    text = str(err).strip()
    if "Original Traceback" in text:
        text = re.sub(r"^[\w.]+: ", "", text.splitlines()[-1])  # "reid.errors.InputError: "
    return " ".join(text.splitlines())
