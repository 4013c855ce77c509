"""The runtime's side of the runner ↔ runtime protocol (``protocol.json`` next to this file).

Runtime → runner: one JSON object per line on the runtime's own stdout — ``hello``, ``ready``,
``log``, ``event``, ``result``, ``error``, ``request`` (the operations are listed in the
document's ``ops``). Runner → runtime: lines on its stdin — ``prepare``, ``start``, ``reply``,
``keepalive`` (taken as it is read, by ``_watchdog``). Both channels belong to the runtime alone:
before the crew is imported, file descriptor 1 is moved onto 2 (raw writes by subprocesses or C
code land on stderr, which the runner reads as log text) and descriptor 0 onto ``/dev/null`` (a
crew reading its standard input cannot swallow a reply); the crew's ``print`` output arrives as
``log`` messages.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import queue
import sys
import threading
from typing import IO, Any, NoReturn, TextIO

from . import _watchdog

VERSION = 4
RUNTIME = "python"
#: Every line but ``result`` stays under the protocol's 64 KiB; text beyond this is cut.
MAX_TEXT_BYTES = 60 * 1024
MAX_LINE_BYTES = 64 * 1024

_lock = threading.Lock()
_channel: TextIO | None = None
_inbox: IO[bytes] | None = None
_ids = itertools.count(1)
_waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
_waiting_lock = threading.Lock()
_serving = threading.Event()
_input_ended = threading.Event()
_reader_pid = 0  # the process whose reader thread sets _input_ended
_closed = False
#: How long :func:`exit_now` waits for the runner to end our input, when it asked (``prepare``'s
#: ``linger``): 0 when it did not.
_linger_s = 0.0
LINGER_S = 5.0
#: Once the reader thread runs: the messages it read that are neither replies nor keepalives
#: (``start``), for :func:`expect`; None at the end of the channel, or the error that broke it.
_incoming: queue.Queue[dict[str, Any] | Exception | None] | None = None


class ProtocolError(Exception):
    """The runner sent something the protocol does not allow at this point."""


class RequestFailed(Exception):
    """The platform answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def cut(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """``text`` within ``limit`` UTF-8 bytes, saying how much was cut.

    The runner knows a cut text by this marker: this runtime does not know which values are
    secret, the runner masks what ends the text if it is the beginning of one. Keep it as it is
    (``node/protocol.mjs`` writes the same)."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", errors="ignore")
    return f"{kept} … [{len(data) - limit} bytes cut]"


class _LogWriter(io.TextIOBase):
    """``sys.stdout`` of the crew: each printed line becomes a ``log`` message (level info)."""

    def __init__(self, stream: str) -> None:
        self._stream = stream
        self._buf = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            send({"t": "log", "level": "info", "message": line, "stream": self._stream})
        if len(self._buf) > MAX_TEXT_BYTES:  # a line that never ends is sent in pieces
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._buf:
            line, self._buf = self._buf, ""
            send({"t": "log", "level": "info", "message": line, "stream": self._stream})

    def isatty(self) -> bool:
        return False


def open_channel() -> None:
    """Take stdin and stdout for the protocol; the crew gets a log writer and ``/dev/null``."""
    global _channel, _inbox
    proto_out = os.dup(1)  # os.dup makes non-inheritable copies: subprocesses never get them
    proto_in = os.dup(0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _channel = os.fdopen(proto_out, "w", buffering=1, encoding="utf-8", errors="replace")
    _inbox = os.fdopen(proto_in, "rb")
    sys.stdout = _LogWriter("stdout")


def reopen_channel() -> None:
    """Take the protocol channels anew from fd 0 and 1 (a forked run's own, see ``forkserver``);
    the previous ones are closed in this process."""
    global _channel, _inbox
    for stream in (_channel, _inbox):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    _channel = _inbox = None
    open_channel()


def linger_at_exit(asked: object) -> None:
    """``prepare.linger``: the runner ends our input once it has read our last line, and nothing
    it writes may meet our end (a container engine reports such a write on the run's output)."""
    global _linger_s
    _linger_s = LINGER_S if asked is True else 0.0


def exit_now(code: int) -> NoReturn:
    """End the process at once, its last protocol line written whole.

    The runner has everything by now (``result`` or ``error`` is flushed), and the interpreter's
    teardown — waiting for threads a framework left behind, atexit handlers (telemetry exporters
    that try a network the crew may not have), finalizing every imported module — took 0.2 to 0.4 s
    of every run. The crew's own files are written and closed when it returns (logging handlers
    are flushed here); a thread it left running does not keep its run going."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if "logging" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["logging"].shutdown()
    if _linger_s and _reader_pid == os.getpid():  # (a crew's own fork has no reader: no wait)
        _input_ended.wait(_linger_s)
    # Holding the lock: no other thread of the crew is halfway through a line (unless one is stuck
    # writing, when the runner stopped reading: then the bound).
    _lock.acquire(timeout=5)
    os._exit(code)


def active() -> bool:
    return _channel is not None


def _default(value: Any) -> Any:
    for attr in ("model_dump", "to_dict", "dict"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return fn()
            except Exception:
                pass
    return str(value)


def encode(message: dict[str, Any]) -> str:
    """One protocol line. A result must be JSON the runner reads: NaN or Infinity in it raise
    ValueError here (``json`` would write them, the runner would not take the line as a result)."""
    strict = message.get("t") == "result"
    return json.dumps(message, default=_default, ensure_ascii=False, allow_nan=not strict)


def send(message: dict[str, Any]) -> None:
    if message.get("t") == "log" and isinstance(message.get("message"), str):
        message = {**message, "message": cut(message["message"])}
    line = encode(message)
    if message.get("t") != "result" and len(line.encode("utf-8", errors="replace")) > MAX_LINE_BYTES:
        # Only an event's payload can get here (log text is cut): say so instead of breaking the line.
        line = encode(
            {
                "t": "log",
                "level": "warning",
                "stream": "runtime",
                "message": f"a {message.get('t')} message of {len(line)} characters was dropped"
                f" ({message.get('type', '')}): over the protocol's {MAX_LINE_BYTES}-byte line limit",
            }
        )
    with _lock:
        if _channel is None:
            return
        _channel.write(line + "\n")
        _channel.flush()


def receive() -> dict[str, Any] | None:
    """The next message from the runner, or None when it closed the channel. A ``keepalive`` is
    never returned: it renews the watchdog as it is read."""
    while _inbox is not None:
        line = _inbox.readline()
        if not line:
            return None
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(f"the runner sent a line that is not JSON: {exc}") from None
        if not isinstance(message, dict) or not isinstance(message.get("t"), str):
            raise ProtocolError("the runner sent a message without a type")
        if message["t"] != "keepalive":
            return message
        _watchdog.renew(message)
    return None


def expect(kind: str) -> dict[str, Any]:
    message: dict[str, Any] | Exception | None
    message = receive() if _incoming is None else _incoming.get()
    if isinstance(message, Exception):
        raise message
    if message is None:
        raise ProtocolError(f"the runner closed the channel before sending {kind!r}")
    if message["t"] != kind:
        raise ProtocolError(f"expected {kind!r} from the runner, got {message['t']!r}")
    return message


def read_ahead() -> None:
    """Read the runner's lines from now on in a thread of their own (after ``prepare``, before a
    cold start imports the crew): keepalives are taken as they come, so the watchdog covers a long
    import too, and :func:`expect` takes ``start`` from what it read."""
    global _incoming
    if _incoming is None:
        _incoming = queue.Queue()
        serve_replies()


def serve_replies() -> None:
    """Hand every ``reply`` to the request waiting for it (a daemon thread, after ``start``; once
    only: after :func:`read_ahead` it runs already)."""
    global _closed, _reader_pid

    if _serving.is_set():
        return
    _serving.set()
    _reader_pid = os.getpid()

    def loop() -> None:
        global _closed
        ended: Exception | None = None
        try:
            while (message := receive()) is not None:
                if message["t"] == "reply":
                    with _waiting_lock:
                        waiter = _waiting.pop(str(message.get("id")), None)
                    if waiter is not None:
                        waiter[1].append(message)
                        waiter[0].set()
                elif _incoming is not None:
                    _incoming.put(message)
                # Other kinds are for later versions of the runner; this runtime ignores them.
        except (ProtocolError, OSError, ValueError) as exc:
            ended = exc if isinstance(exc, ProtocolError) else None
        except Exception as exc:  # whatever it was, the one waiting for input must hear of it
            ended = ProtocolError(f"the runner's input could not be read: {exc!r}")
        if _incoming is not None:
            _incoming.put(ended)
        with _waiting_lock:
            _closed = True
            for event, _ in _waiting.values():
                event.set()
            _waiting.clear()
        _input_ended.set()

    threading.Thread(target=loop, name="crewyard-replies", daemon=True).start()


#: Arguments longer than this (as JSON) go in pieces (``blob.append``), each this many characters:
#: even escaped six bytes to a character, a piece's line stays under the line limit.
_INLINE_ARGS = 48 * 1024
_PIECE_CHARS = 8000


def request(op: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
    """Ask the platform for something (``op`` with ``args``); returns the reply's value.
    Arguments too long for one line are sent in pieces first (``blob.append``)."""
    text = encode(args or {})
    if len(text) > _INLINE_ARGS // 4 and len(text.encode("utf-8")) > _INLINE_ARGS:
        blob = f"b{next(_ids)}"
        for start in range(0, len(text), _PIECE_CHARS):
            _call("blob.append", {"blob": blob, "data": text[start : start + _PIECE_CHARS]}, timeout)
        return _call(op, {"$blob": blob}, timeout)
    return _call(op, args or {}, timeout)


def _call(op: str, args: dict[str, Any], timeout: float | None) -> Any:
    request_id = f"r{next(_ids)}"
    done = threading.Event()
    box: list[dict[str, Any]] = []
    with _waiting_lock:
        if _closed or _channel is None:
            raise RequestFailed("unavailable", "the runtime has no channel to the platform")
        _waiting[request_id] = (done, box)
    send({"t": "request", "id": request_id, "op": op, "args": args})
    if not done.wait(timeout):
        with _waiting_lock:
            _waiting.pop(request_id, None)
        raise RequestFailed("timeout", f"no reply to {op!r} within {timeout} s")
    if not box:
        raise RequestFailed("unavailable", "the runner closed the channel")
    reply = box[0]
    if reply.get("ok") is True:
        return reply.get("value")
    error = reply.get("error")
    if not isinstance(error, dict):
        error = {}
    raise RequestFailed(str(error.get("code", "error")), str(error.get("message", "request failed")))
