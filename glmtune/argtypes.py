"""argparse value types shared by every command line: numbers in a range, with the range said in words."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        if not text.strip().lstrip("-").isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return int(text)

    return parse


def number_between(low: float, high: float, unit: str = "a number") -> Callable[[str], float]:
    """An argparse type: a float from ``low`` to ``high`` (``high`` may be infinite)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            span = f">= {low:g}" if high == float("inf") else f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"expected {unit} {span}, got {text!r}")
        return value

    return parse


def is_loopback(host: str) -> bool:
    """True for 127.0.0.1, ::1 and localhost: an address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
