"""How the console commands end: a user's mistake is one line on stderr and exit code 1, never a traceback.

Library functions raise ``UserError`` (or ``FileNotFoundError``) for what the user can fix; only a command's
``main``, wrapped by ``console_command``, turns them into the message and the exit code.
"""
import functools
import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A mistake in a command's input (a missing dataset, folder or file, a bad setting): the message says which
    and what to do."""


def console_command(prog: str) -> Callable:
    """Decorator for a command's ``main(argv=None)``: ``UserError`` and ``FileNotFoundError`` become
    ``<prog>: error: <message>`` on stderr and exit code 1."""
    def wrap(main: Callable) -> Callable:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> object:
            try:
                return main(argv)
            except (UserError, FileNotFoundError) as error:
                print(f"{prog}: error: {error}", file=sys.stderr)
                raise SystemExit(1) from None
        return run
    return wrap
