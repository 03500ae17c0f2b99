"""The outbox: one write per side, the upstream first, and nothing after a Close."""

from __future__ import annotations

from proxy.core.commands import Close, OpenUpstream, Outbox, SendClient, SendUpstream, StartTLS


def test_bytes_are_merged_per_side_upstream_first_then_commands() -> None:
    out = Outbox()
    out.client(b"a")
    out.upstream(b"1")
    out.command(StartTLS())
    out.client(memoryview(b"bc"))
    out.upstream(b"2")
    assert out.flush() == [SendUpstream(b"12"), SendClient(b"abc"), StartTLS()]
    assert out.flush() == []


def test_close_comes_last_with_its_last_words_and_only_once() -> None:
    out = Outbox()
    out.client(b"rows")
    out.command(OpenUpstream("crm", "postgres"))
    out.close("bye", b"FATAL")
    out.close("again", b"ignored")
    out.client(b"late")
    out.upstream(b"late")
    out.command(StartTLS())
    assert out.closed
    assert out.flush() == [SendClient(b"rowsFATAL"), OpenUpstream("crm", "postgres"), Close("bye")]
    assert out.flush() == []


def test_data_taken_back_before_the_flush_is_not_sent() -> None:
    # The relay hides an answer by truncating `to_client`; the last words survive it.
    out = Outbox()
    out.client(b"shown")
    mark = len(out.to_client)
    out.client(b"hidden")
    out.close("unsafe", b"FATAL")
    del out.to_client[mark:]
    assert out.flush() == [SendClient(b"shownFATAL"), Close("unsafe")]
