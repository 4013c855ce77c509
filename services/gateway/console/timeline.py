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

A crew chooses its events, so placing one must not cost more as the run grows: open groups are
indexed by kind and by (kind, name) as well as stacked, so finding what a closing event closes
is a look-up, not a scan of every open group (12,000 open agents and 12,000 closes naming none
of them made the scan quadratic, a minute of the gateway's event loop). Each group is indexed
once when it opens and unindexed once when it closes, so a run of n events costs O(n).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

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
_Key = TypeVar("_Key")


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
    #: Stack positions of the open groups of each kind, and of each (kind, name), innermost last.
    _of_kind: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _of_name: dict[tuple[str, str], list[int]] = field(default_factory=dict, repr=False)

    def _inner(self) -> str:
        return f"{self.stack[-1].group}-items" if self.stack else ROOT

    def _open(self, opened: _Open) -> None:
        position = len(self.stack)
        self.stack.append(opened)
        self._of_kind.setdefault(opened.kind, []).append(position)
        self._of_name.setdefault((opened.kind, opened.name), []).append(position)

    def _close_from(self, position: int) -> None:
        """Close the open group at ``position`` and everything still open inside it."""
        while len(self.stack) > position:
            closed = self.stack.pop()
            _drop_innermost(self._of_kind, closed.kind)
            _drop_innermost(self._of_name, (closed.kind, closed.name))

    def _closed_by(self, kind: str, name: str) -> int:
        """The stack position of the nearest open group of ``kind`` that a close naming
        ``name`` closes (a nameless close or a nameless group matches any name), or -1."""
        if not name:
            return self._of_kind.get(kind, [-1])[-1]
        return max(self._of_name.get((kind, name), [-1])[-1], self._of_name.get((kind, ""), [-1])[-1])

    def place(self, seq: int, event_type: str, data: dict[str, Any]) -> Placed:
        if event_type.startswith("run."):
            if event_type in ("run.completed", "run.failed", "run.canceled"):
                self._close_from(0)
            return Placed(ROOT)
        kind = OPENS.get(event_type)
        if kind is not None:
            while self.stack and self.stack[-1].kind == "tool":
                # a tool that never reported back contains nothing more
                self._close_from(len(self.stack) - 1)
            into = self._inner()
            group = f"g{seq}"
            self._open(_Open(kind, _name(data, kind), group))
            return Placed(into, group=group, kind=kind, depth=len(self.stack) - 1)
        kind = CLOSES.get(event_type)
        if kind is not None:
            index = self._closed_by(kind, _name(data, kind))
            if index >= 0:
                opened = self.stack[index]
                self._close_from(index)
                return Placed(f"{opened.group}-items", depth=index + 1)
        return Placed(self._inner(), depth=len(self.stack))


def _name(data: dict[str, Any], kind: str) -> str:
    value = data.get(_NAME_FIELD[kind])
    return value if isinstance(value, str) else ""


def _drop_innermost(index: dict[_Key, list[int]], key: _Key) -> None:
    """Unindex the innermost open group under ``key``: the one being closed, as it opened last."""
    positions = index[key]
    positions.pop()
    if not positions:
        del index[key]  # the index holds only what is open, however many names a crew makes up
