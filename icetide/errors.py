"""One error root for icetide, and its kinds.

Every error says whether retrying can help (`transient`) so that long-running
consumers know whether to retry a failure or dead-letter it.
"""

from __future__ import annotations


class IcetideError(Exception):
    """Root of every error icetide raises on purpose.

    The CLI prints `error: <message>` for these and exits 1 (2 for usage errors);
    anything else is a bug and shows a traceback.
    """

    transient: bool = False
    exit_code: int = 1


class ConfigError(IcetideError):
    """A setting is wrong: the message names the key and the file it came from."""

    exit_code = 2


class SetupError(IcetideError):
    """Something the machine must provide is missing (JDK, jars, a free port)."""


class StackError(IcetideError):
    """An embedded service could not be started, reached or stopped."""


class TransientError(IcetideError):
    """A failure that may go away on retry (broker unavailable, lock timeout)."""

    transient = True


class EventError(IcetideError):
    """A change event cannot be decoded or applied; it belongs on the dead-letter topic."""


class DownstreamError(IcetideError):
    """The downstream database cannot take a change as it stands (e.g. a column made by an older
    version whose values do not convert to the schema's type). Neither the event's fault (no dead
    letter) nor transient: the consumer stops, and the message says what to do."""


class PolicyError(IcetideError):
    """A policy file is invalid; carries file:line:col of the offending node."""

    def __init__(self, message: str, *, file: str = "<policy>", line: int = 0, col: int = 0) -> None:
        self.file = file
        self.line = line
        self.col = col
        self.reason = message
        super().__init__(f"{file}:{line}:{col}: {message}")


class AccessDenied(IcetideError):
    """A query or read was refused by policy."""
