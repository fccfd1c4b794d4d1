"""Route dependencies as `Annotated` aliases: a route declares what it needs by type.

The rule: routes reach the library (documents, collections, search, the embedder)
through `IndexDep`, and ask questions through the RAG pipeline on `StateDep`; whatever
they read or change of it, and of the conversations, is `TenantDep`'s.
"""

from typing import Annotated

from fastapi import Depends, Request

from api.server.auth import owner_of
from api.server.state import AppState
from indexer.index import Index


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.pagedrag
    return state


def get_index(request: Request) -> Index:
    return get_state(request).index


StateDep = Annotated[AppState, Depends(get_state)]
IndexDep = Annotated[Index, Depends(get_index)]
TenantDep = Annotated[str, Depends(owner_of)]  # the key's tenant, else the open one
