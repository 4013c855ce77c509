"""Where each event of a run goes on its timeline: agent → task → tool, as the CLI tells it.

Pure and deterministic: folding a run's events from its first one always places them the same
way, so a page that reconnects with ``Last-Event-ID`` gets the events it missed placed exactly
where a page that never dropped would have them (the gateway folds from the start — its run feed
holds the whole run — and sends only what comes after the client's last event).

An opening event (``agent.started``, ``task.started``, ``tool.called``) makes a group inside the
innermost open group; its closing event (``agent.completed``/``agent.error``,
``task.completed``, ``tool.result``/``tool.error``) goes into the nearest open group of its kind
and name and closes it (and anything still open inside it). Logs and artifacts go into the
innermost open group; run lifecycle events stay at the top. A closing event without an opening
one is simply placed where it happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROOT = "timeline"
OPENS = {"agent.started": "agent", "task.started": "task", "tool.called": "tool"}
CLOSES = {
    "agent.completed": "agent",
    "agent.error": "agent",
    "task.completed": "task",
    "tool.result": "tool",
    "tool.error": "tool",
}
_NAME_FIELD = {"agent": "agent", "task": "task", "tool": "tool"}


@dataclass(frozen=True)
class Placed:
    #: The element id of the list the event goes into.
    into: str
    #: The id of the group the event opens (its own list is ``<group>-items``), if it opens one.
    group: str | None = None
    kind: str | None = None
    depth: int = 0


@dataclass
class _Open:
    kind: str
    name: str
    group: str


@dataclass
class Timeline:
    stack: list[_Open] = field(default_factory=list)

    def _inner(self) -> str:
        return f"{self.stack[-1].group}-items" if self.stack else ROOT

    def place(self, seq: int, event_type: str, data: dict[str, Any]) -> Placed:
        if event_type.startswith("run."):
            if event_type in ("run.completed", "run.failed", "run.canceled"):
                self.stack.clear()
            return Placed(ROOT)
        kind = OPENS.get(event_type)
        if kind is not None:
            while self.stack and self.stack[-1].kind == "tool":
                self.stack.pop()  # a tool that never reported back contains nothing more
            into = self._inner()
            group = f"g{seq}"
            self.stack.append(_Open(kind, _name(data, kind), group))
            return Placed(into, group=group, kind=kind, depth=len(self.stack) - 1)
        kind = CLOSES.get(event_type)
        if kind is not None:
            name = _name(data, kind)
            for index in range(len(self.stack) - 1, -1, -1):
                opened = self.stack[index]
                if opened.kind == kind and (not name or not opened.name or opened.name == name):
                    del self.stack[index:]
                    return Placed(f"{opened.group}-items", depth=index + 1)
        return Placed(self._inner(), depth=len(self.stack))


def _name(data: dict[str, Any], kind: str) -> str:
    value = data.get(_NAME_FIELD[kind])
    return value if isinstance(value, str) else ""
