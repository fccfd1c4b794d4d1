"""One router per API family; each route only translates HTTP to `rag/` and `engine/` calls."""
