"""The one exception type for mistakes a user can make and fix.

The CLI turns a `UserError` into a one-line message and exit code 2; anything else is a bug and keeps
its traceback. Messages name the problem and the fix in one line.
"""


class UserError(Exception):
    """A problem with the user's input (path, config, data, weights) that they can fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, handled: the run saved where it stopped; the message says how to continue."""
