"""A varied set of conversations in glmtune's internal form, for proving layouts against real templates."""

from __future__ import annotations

import json
from typing import Any

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                                    "units": {"type": "object"}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time", "parameters": {"type": "object", "properties": {}}}}


def call(name: str, arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A GLM-4 style function call message."""
    return {"role": "assistant", "metadata": name, "content": json.dumps(arguments, ensure_ascii=False), **extra}


def user(text: str, **extra: Any) -> dict[str, Any]:
    """A user turn."""
    return {"role": "user", "content": text, **extra}


def reply(text: str, reasoning: str | None = None, **extra: Any) -> dict[str, Any]:
    """An assistant answer, with reasoning when given."""
    out: dict[str, Any] = {"role": "assistant", "content": text, **extra}
    if reasoning:
        out["reasoning_content"] = reasoning
    return out


def result(text: str) -> dict[str, Any]:
    """A tool result."""
    return {"role": "observation", "content": text}


CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "single": [user("What is 2+2?"), reply("It is 4.")],
    "system": [{"role": "system", "content": "You are terse."}, user("Hi"), reply("Hello.")],
    "multi_turn": [user("Name a colour."), reply("Blue."), user("Another?"), reply("Green.")],
    "tools_one_call": [
        {"role": "system", "content": "", "tools": [WEATHER]}, user("Weather in Paris for 3 days?"),
        call("get_weather", {"city": "Paris", "days": 3, "units": {"temp": "C"}}),
        result('{"temp": 21}'), reply("It is 21 degrees in Paris."),
    ],
    "two_calls_two_results": [
        {"role": "system", "content": "", "tools": [WEATHER, TIME]}, user("Weather and time in Rome?"),
        call("get_weather", {"city": "Rome"}), call("get_time", {}),
        result('{"temp": 25}'), result('{"time": "10:00"}'), reply("25 degrees, and it is 10:00."),
    ],
    "thinking": [user("Is 7 prime?"), reply("Yes, 7 is prime.", reasoning="7 has no divisors but 1 and 7.")],
    "thinking_multi_turn": [
        user("Is 9 prime?"), reply("No.", reasoning="9 = 3 * 3."),
        user("And 11?"), reply("Yes, 11 is prime.", reasoning="11 has no divisor below its root."),
    ],
    "thinking_then_call": [
        {"role": "system", "content": "", "tools": [WEATHER]}, user("Should I take an umbrella in Oslo?"),
        call("get_weather", {"city": "Oslo"}, reasoning_content="I need the weather first."),
        result('{"rain": true}'), reply("Yes, take one.", reasoning="Rain is forecast."),
    ],
    "nothink": [user("Say hi.", enable_thinking=False), reply("Hi!")],
}
