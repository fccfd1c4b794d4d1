"""Errors a user can cause, by category, each with a message that says what to do.

Every package raises these (or its own subclasses of them); the CLI prints any of them
as one line and HTTP maps each category to one status. Anything else that escapes is a
bug: the server answers 500 with a generic message and logs it, never echoing a bare
`ValueError` from deep inside as if the client had caused it.
"""


class PagedRAGError(Exception):
    """Base of every error caused by input, configuration or the environment (HTTP 400
    unless a category below says otherwise)."""


class InvalidInputError(PagedRAGError, ValueError):
    """A value out of range or malformed. Also a `ValueError`, as Python callers expect."""


class NotFoundError(PagedRAGError):
    """Something named by id or name that does not exist (HTTP 404)."""


class UnsupportedError(PagedRAGError):
    """A kind of input the program cannot handle, such as a file format (HTTP 415)."""


class UnavailableError(PagedRAGError):
    """A service that cannot take the request now: overloaded or shut down (HTTP 503)."""
