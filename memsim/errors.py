"""The one exception type for a user's mistake.

Every error a user can cause (a malformed protocol, a bad trial table, a
missing file) is raised as :class:`UserError` with a one-line message that
names the file and the field. The CLI prints that line and exits with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input: printed as one line, exit status 2."""

    def __init__(self, message: str, *, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        text = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {text}" if self.path else text)

    def __reduce__(self):
        # a worker process's error reaches the parent pickled: keep the path with the message
        return (_restore, (str(self), self.path))


def _restore(text: str, path: str | None) -> UserError:
    err = UserError(text)
    err.path = path
    return err
