"""Tool calls: the tools go to the model through its own chat template, and its reply is
read back into calls.

A call is `{"name": ..., "arguments": {...}}` for one of the request's tools, inside
`<tool_call>` tags as Qwen's template asks (Hermes style), or as the whole reply: small
models often drop the tags. Anything else stays text, so a reply that only looks like a
call to an unknown tool is never run as one. A request that demands a call gets one by
constrained decoding (`forced_call`).
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from engine.structured_outputs import StructuredOutputs

TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


def parse_tool_calls(text: str, tool_names: set[str]) -> tuple[str, list[ToolCall]]:
    """The reply's text without its calls, and the calls in order."""
    tagged = [_call(block, tool_names) for block in TAGGED.findall(text)]
    if tagged and all(tagged):
        return TAGGED.sub("", text).strip(), [call for call in tagged if call]
    try:
        whole = json.loads(text)
    except ValueError:
        return text, []
    items = whole if isinstance(whole, list) else [whole]
    calls = [_as_call(item, tool_names) for item in items]
    if calls and all(calls):
        return "", [call for call in calls if call]
    return text, []


def tool_names(tools: list[dict[str, Any]]) -> set[str]:
    """The offered tools' names; a tool without `function.name` is a client error.

    Raises:
        ValueError: with what is missing, for a 400.
    """
    names = set()
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError("each tool needs a function with a name")
        names.add(name)
    return names


def forced_call(
    tools: list[dict[str, Any]], name: str | None, chat_template: str
) -> StructuredOutputs:
    """What a reply must be when the request demands a call (OpenAI's `tool_choice`
    "required", or a named function): one call of that tool (of any, for None), its
    arguments as the tool's schema allows, in the model's own tags where its template
    has them. Constrained decoding keeps the reply to it."""
    calls = [
        _call_schema(tool["function"]) for tool in tools if name in (None, tool["function"]["name"])
    ]
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    if "<tool_call>" in chat_template:
        return StructuredOutputs(json=schema, prefix="<tool_call>\n", suffix="\n</tool_call>")
    return StructuredOutputs(json=schema)


def template_takes_tools(chat_template: str | None) -> bool:
    """Whether the model's chat template renders a `tools` list (Qwen2.5's does)."""
    return bool(chat_template) and "tools" in str(chat_template)


def _call(block: str, tool_names: set[str]) -> ToolCall | None:
    try:
        return _as_call(json.loads(block), tool_names)
    except ValueError:
        return None


def _as_call(item: object, tool_names: set[str]) -> ToolCall | None:
    if not isinstance(item, dict) or item.get("name") not in tool_names:
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return ToolCall(str(item["name"]), arguments) if isinstance(arguments, dict) else None


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    """`{"name": <the tool's>, "arguments": <what its parameters allow>}`."""
    arguments = function.get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
