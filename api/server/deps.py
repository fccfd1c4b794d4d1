"""Route dependencies as `Annotated` aliases: a route declares what it needs by type."""

from typing import Annotated

from fastapi import Depends, Request

from api.server.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.pagedrag
    return state


StateDep = Annotated[AppState, Depends(get_state)]
