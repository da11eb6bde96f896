"""The one reader of the config file: tables, keys, kinds and addresses, and how problems are worded.

Every problem becomes ``ConfigError("<file>: [table] key: what is wrong, and what to write")``, raised
while the file is loaded, before anything connects anywhere. The parsers of each table (config/*.py)
use this class and nothing else to look at the parsed TOML.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from workflows.errors import ConfigError

ADDRESS_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")

_WORDS = {int: "a whole number", float: "a number", str: "a string (in quotes)", bool: "true or false",
          list: "a list like [\"a\", \"b\"]", dict: "a table"}


def kind_words(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(_WORDS.get(k, k.__name__) for k in kinds)


def is_address(value: Any) -> bool:
    return isinstance(value, str) and bool(ADDRESS_RE.match(value.strip()))


class Reader:
    """Reads the parsed TOML of one file; ``source`` (the file) starts every error message."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    # -- tables and keys ---------------------------------------------------------------------------
    def section(self, name: str, allowed: Iterable[str] | None = None, *, required: bool = False,
              within: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Table ``name`` of the file (or of ``within``), ``{}`` when absent; its keys checked against ``allowed``."""
        t = (self.data if within is None else within).get(name)
        if t is None:
            if required:
                raise self.fail(f"[{name}]", "this table is required")
            return {}
        if not isinstance(t, dict):
            raise self.fail(f"[{name}]", "must be a table")
        if allowed is not None:
            self.check_keys(t, f"[{name}]", allowed)
        return t

    def check_keys(self, t: Mapping[str, Any], where: str, allowed: Iterable[str], hint: str = "") -> None:
        allowed = sorted(allowed)
        unknown = sorted(set(t) - set(allowed))
        if unknown:
            raise self.fail(f"{where} {unknown[0]}", hint or f"unknown key; allowed: {', '.join(allowed)}")

    def get(self, t: Mapping[str, Any], where: str, key: str, kind: type | tuple[type, ...],
            default: Any = ...) -> Any:
        """``t[key]`` of the given kind; ``default`` when absent (required when no default is given)."""
        if key not in t:
            if default is ...:
                raise self.fail(f"{where} {key}", "missing; it is required")
            return default
        v = t[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(v, bool) and bool not in kinds:  # TOML true is a Python int too
            raise self.fail(f"{where} {key}", f"must be {kind_words(kind)}, not true/false")
        if not isinstance(v, kind):
            raise self.fail(f"{where} {key}", f"must be {kind_words(kind)}, got {v!r}")
        return v

    def whole(self, t: Mapping[str, Any], where: str, key: str, default: int, lo: int = 0,
              hi: int | None = None) -> int:
        v = t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            span = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
            raise self.fail(f"{where} {key}", f"must be a whole number {span}, got {v!r}")
        return v

    def number(self, t: Mapping[str, Any], where: str, key: str, default: float, lo: float = 0.0) -> float:
        v = t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
            raise self.fail(f"{where} {key}", f"must be a number >= {lo:g}, got {v!r}")
        return float(v)

    def flag(self, t: Mapping[str, Any], where: str, key: str, default: bool) -> bool:
        v = t.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(f"{where} {key}", "must be true or false")
        return v

    def text(self, t: Mapping[str, Any], where: str, key: str, default: str) -> str:
        v = t.get(key, default)
        if not isinstance(v, str):
            raise self.fail(f"{where} {key}", f"must be a string, got {v!r}")
        return v

    # -- addresses -----------------------------------------------------------------------------------
    def address(self, v: Any, where: str) -> str:
        """A mail address, lower-cased; the one address check of the whole config."""
        if not is_address(v):
            raise self.fail(where, f"{v!r} is not a mail address like support@example.com")
        return v.strip().lower()

    def addresses(self, t: Mapping[str, Any], where: str, key: str) -> tuple[str, ...]:
        return tuple(self.address(a, f"{where} {key}") for a in self.get(t, where, key, list, []))

    def people(self, values: Any, where: str, roles: Iterable[str]) -> tuple[str, ...]:
        """A non-empty list of roles or addresses (the escalation ladder's and the digest's ``to``)."""
        roles = tuple(roles)
        if not isinstance(values, list) or not values or not all(isinstance(x, str) for x in values):
            raise self.fail(where, f"must be a non-empty list of roles ({', '.join(roles)}) or addresses")
        cleaned = tuple(x.strip().lower() for x in values)
        for x in cleaned:
            if x not in roles and not is_address(x):
                raise self.fail(where, f"{x!r} is neither a role ({', '.join(roles)}) nor a mail address")
        return cleaned
