"""A registry of things named on the command line (outputs, face sources) and built on demand.

Each entry names its class as "module:Class" text, so the registry (and whatever imports it)
loads without the libraries an entry needs (OpenCV, pyvirtualcam, a network stack): the module is
imported only when that entry is asked for. Must not import anything heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .errors import UserError

__all__ = ["Registry", "Entry"]


@dataclass(frozen=True)
class Entry:
    target: str         # "package.module:Class"
    usage: str          # how it is written on the command line: "vcam", "stream[:PORT]"
    help: str


class Registry:
    """``NAME[:ARG]`` -> ``Class.from_spec(ARG or None, ctx)``."""

    def __init__(self, what: str, flag: str):
        self.what = what            # "an output", "a face source": for the error message
        self.flag = flag            # "--output"
        self.entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, help: str, usage: str | None = None) -> None:
        """Make ``FLAG NAME[:ARG]`` build ``target`` ("package.module:Class")."""
        self.entries[name] = Entry(target, usage or name, help)

    def usages(self, skip: tuple[str, ...] = ()) -> list[str]:
        return [e.usage for n, e in self.entries.items() if n not in skip]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def create(self, spec: str, ctx: Any, *, name: str | None = None) -> Any:
        """Build the entry ``spec`` names (or ``name``, handing it all of ``spec`` as ARG).

        Raises:
            UserError: no such entry (the message lists them).
        """
        arg: str | None
        if name is None:
            name, _, arg = spec.partition(":")
        else:
            arg = spec
        entry = self.entries.get(name)
        if entry is None:
            raise UserError(f"{self.flag} {spec}: not {self.what}; choose one of "
                            f"{', '.join(self.usages())}")
        module, _, cls = entry.target.partition(":")
        return getattr(importlib.import_module(module), cls).from_spec(arg or None, ctx)

    def snapshot(self) -> dict[str, Entry]:
        """A copy of the entries (tests register their own and put these back)."""
        return dict(self.entries)

    def restore(self, entries: dict[str, Entry]) -> None:
        self.entries = dict(entries)
