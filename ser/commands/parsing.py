"""How a command line that cannot be parsed ends: the error first, then where to look.

argparse (and jsonargparse after it) prints the whole usage, ~60 lines for ``fit``, before the one
line that matters. ``ShortErrors.error`` (argparse's public hook for this) prints the ``error:``
line and one hint instead, and exits with argparse's status 2. jsonargparse's
``Parser key "data.batch_size":`` is said as the option the user typed, ``--data.batch_size:``.
"""

from __future__ import annotations

import re
import sys
from typing import NoReturn

_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":')


class ShortErrors:
    """Mixed into a jsonargparse ``ArgumentParser`` (or a subclass): short parse errors.

    A parser that jsonargparse itself uses with ``exit_on_error=False`` (it tries one type after
    another and catches the error) keeps raising, as before.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        command = self.prog.replace(" [options]", "")
        message = _PARSER_KEY.sub(r"--\1:", message)
        sys.stderr.write(f"error: {message}\n({command} --help lists the options)\n")
        self.exit(2)
