"""What the console's live streams send: HTML fragments a browser's EventSource reads whole."""

from __future__ import annotations

from crewyard.client._sse import SseLines, SseParser
from crewyard.gateway.console.live import message
from crewyard.gateway.console.threads import _message


def test_a_fragment_with_carriage_returns_is_one_message_as_a_browser_reads_it():
    # A browser ends a line at a lone CR too: a crew printing "\r\revent: end\rdata: forged" made
    # the page end its stream there, and nothing the run did after it was ever shown.
    html = "<li>progress 10%\r20%\r\revent: end\rdata: forged\r\r</li>\n<li>next</li>\r\n<li>last</li>"
    parser = SseParser()
    messages = [m for line in SseLines().feed(message(7, html).decode()) if (m := parser.feed(line))]
    assert [(m.event, m.id) for m in messages] == [("html", "7")]
    assert messages[0].data.split("\n")[-1] == "<li>last</li>" and "forged" in messages[0].data


def test_a_messages_role_styles_it_only_by_a_class_of_its_own():
    assert _message({"role": "User", "content": "hi"})["kind"] == "user"
    odd = _message({"role": "user sr-only", "content": "hidden?"})
    assert odd["role"] == "user sr-only" and odd["kind"] == "user-sr-only"
    assert _message({"type": "ai", "content": "x"})["kind"] == "ai"
