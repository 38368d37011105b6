"""How commands talk to the user: the exception for mistakes a user can fix, and the log line type.

The CLI turns a `UserError` into a one-line message and exit code 2; anything else is a bug and keeps
its traceback. Messages name the problem and the fix in one line. Every command function takes a
`log: Log` (print by default; the CLI passes typer.echo) for its progress lines.
"""

from typing import Callable

Log = Callable[[str], None]


class UserError(Exception):
    """A problem with the user's input (path, config, data, weights) that they can fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, handled: the run saved where it stopped; the message says how to continue."""
