"""Errors a user can cause when asking, each with a message that says what to do."""

from common.errors import InvalidInputError


class InvalidQuestionError(InvalidInputError):
    """An empty question, a malformed history or an out-of-range option."""
