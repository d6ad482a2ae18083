"""What the command-line tools do when the reader of their output goes away (``... | head``).

Python ignores SIGPIPE, so a write to a closed pipe raises ``BrokenPipeError``, and without care the
user sees a traceback (or "Exception ignored ... BrokenPipeError" from the interpreter's last flush)
where every Unix tool simply stops.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# What a shell reports for a tool that a broken pipe ended: 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141


def guard_stdout(main: Callable[[], int]) -> int:
    """Run a command's ``main``; if the reader of standard output went away, end quietly."""
    try:
        try:
            return main()
        finally:
            # Output still buffered would fail in the interpreter's exit flush, where no handler
            # sees it (argparse's --help exits that way): flushed here, inside this one.
            sys.stdout.flush()
    except BrokenPipeError:
        # Point standard output at /dev/null so that the interpreter's own flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
