"""Errors a user can cause when asking, each with a message that says what to do."""

from engine.errors import PagedRAGError


class InvalidQuestionError(PagedRAGError, ValueError):
    """An empty question, a malformed history or an out-of-range option."""
