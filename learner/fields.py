"""What every config section is made of: a field with its help text, a check that names the bad
value, and the error both raise.

>>> from dataclasses import dataclass
>>> @dataclass
... class Example:
...     n: int = setting("How many.", 3)
...     def __post_init__(self):
...         require(self.n >= 1, "example.n", self.n, "must be at least 1")
>>> Example().n
3
>>> Example(0)
Traceback (most recent call last):
...
learner.fields.ConfigError: example.n = 0: must be at least 1
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

__all__ = ["ConfigError", "require", "setting"]


class ConfigError(ValueError):
    """A config value or key that is not valid; the message names it."""


def setting(text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field with ``text`` as its help (``memstream config`` prints it) and ``default``."""
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


def require(condition: bool, name: str, value: Any, requirement: str) -> None:
    """Raise :class:`ConfigError` ``"NAME = VALUE: REQUIREMENT"`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{name} = {value!r}: {requirement}")
