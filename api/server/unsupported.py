"""Parameters a client may send that this server does not implement: a 400 that names
them, never a silent default. A client that asked for tools, a JSON format or a penalty
would otherwise trust an answer its options never shaped.

Each API lists the fields it knows but leaves alone, with the values that mean "off"
(sending those is the same as leaving the field out); `None` always means left out.
"""

from collections.abc import Callable, Mapping

from pydantic import BaseModel

from api.server.errors import ApiError

Neutral = Callable[[object], bool]  # whether a value asks for nothing to be done


def anything(_: object) -> bool:
    """A field with no effect on the output (an end-user id, metadata, a runner option)."""
    return True


def one_of(*values: object) -> Neutral:
    """These values (a boolean only as itself: a count of 0 may still ask for something)."""
    return lambda value: any(_same(value, v) for v in values)


def empty(value: object) -> bool:
    return value in ("", [], {})


def refuse_unimplemented(body: BaseModel, neutral: Mapping[str, Neutral], where: str = "") -> None:
    """400 naming every field of `body` outside its model that asks for something.

    A field not in `neutral` is refused whatever its value: an unknown name is more likely
    a feature this server lacks than one that does nothing.
    """
    asked = sorted(
        name
        for name, value in (body.model_extra or {}).items()
        if value is not None and not neutral.get(name, _never)(value)
    )
    if asked:
        listed = ", ".join(f"{where}{name}" for name in asked)
        verb, pronoun = ("is", "it") if len(asked) == 1 else ("are", "them")
        raise ApiError(
            400, f"{listed} {verb} not supported by this server; send the request without {pronoun}"
        )


def _never(_: object) -> bool:
    return False


def _same(value: object, wanted: object) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return value == wanted
