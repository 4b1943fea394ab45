"""The project's one error type: every problem a user can fix is a `HierDiffuseError`.

The CLI prints it as one line, `error: ...` (exit status 2), never a traceback.
Each subclass is also a `ValueError`, so code written against the standard
type keeps working.
"""


class HierDiffuseError(ValueError):
    """A problem the user can fix: bad input, a bad config, a missing or malformed file.
    The message names the field, file or line at fault."""
