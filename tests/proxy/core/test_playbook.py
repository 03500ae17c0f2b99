"""The playbook helper itself, on a toy session that echoes and closes."""

from __future__ import annotations

import os

import pytest

from proxy.core.commands import Close, Command, SendClient, SendUpstream
from proxy.core.events import ClientClosed, ClientData, Event, UpstreamData
from proxy.core.playbook import Placeholder, Playbook


class Echo:
    """Client bytes go upstream; upstream bytes come back with a random tag; ClientClosed closes."""

    def handle(self, event: Event) -> list[Command]:
        if isinstance(event, ClientData):
            return [SendUpstream(event.data)]
        if isinstance(event, UpstreamData):
            return [SendClient(event.data + os.urandom(2))]
        if isinstance(event, ClientClosed):
            return [Close("client closed")]
        return []


def test_a_transcript_that_matches() -> None:
    tagged = Placeholder(SendClient)
    pb = Playbook(Echo())
    assert pb >> ClientData(b"hi") << SendUpstream(b"hi") >> UpstreamData(b"yo") << tagged
    assert tagged().data.startswith(b"yo") and len(tagged().data) == 4
    # Extending it feeds only the new events.
    assert pb >> ClientClosed() << Close("client closed")
    assert len(pb.actual) == 6


def test_a_mismatch_fails_with_a_readable_diff() -> None:
    pb = Playbook(Echo()) >> ClientData(b"hi") << SendClient(b"hi")
    with pytest.raises(AssertionError) as e:
        bool(pb)
    assert str(e.value) == (
        "playbook does not match (- expected, + actual):\n"
        "  >> ClientData(data=b'hi')\n"
        "- << SendClient(data=b'hi')\n"
        "+ << SendUpstream(data=b'hi')"
    )


def test_missing_and_extra_commands_fail() -> None:
    with pytest.raises(AssertionError, match=r"\+ << SendUpstream"):
        bool(Playbook(Echo()) >> ClientData(b"hi"))
    with pytest.raises(AssertionError, match=r"- << Close"):
        bool(Playbook(Echo()) >> ClientData(b"hi") << SendUpstream(b"hi") << Close("x"))


def test_a_placeholder_not_matched_yet_says_so() -> None:
    with pytest.raises(LookupError):
        Placeholder(SendClient)()


def test_a_matched_placeholder_reads_as_what_it_matched_in_a_diff() -> None:
    tagged = Placeholder(SendClient)
    pb = Playbook(Echo()) >> UpstreamData(b"yo") << tagged >> ClientData(b"hi") << Close("x")
    with pytest.raises(AssertionError) as e:
        bool(pb)
    assert f"  << {tagged()!r}" in str(e.value) and "<any" not in str(e.value)
