"""Row ids as every database here stores them."""

MAX_ROW_ID = 2**63 - 1  # SQL BIGINT: a larger number names no row (drivers overflow on it)


def storable(row_id: int) -> bool:
    """Whether `row_id` could name a row; a lookup of any other id is a plain "not found"."""
    return -MAX_ROW_ID <= row_id <= MAX_ROW_ID
