"""Fixtures shared by every test: a private Redis, and local arXiv and OpenAI servers.

Nothing here uses a service already running on the machine: Redis is our own
child process on a free loopback port, and the two HTTP services are fakes
served from background threads of the test process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from worker.local_redis import RedisServer

# --- Redis --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole session (started only if a test asks)."""
    with RedisServer(data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis URL, emptied (FLUSHALL) before the test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


# --- HTTP services ------------------------------------------------------------------


@pytest.fixture
def fake_arxiv() -> Iterator[FakeArxivServer]:
    """A fake arXiv API over the default synthetic corpus; its URL is `fake_arxiv.url`."""
    with FakeArxivServer() as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI API; point the SDK at `fake_openai.url`."""
    with FakeOpenAIServer() as server:
        yield server
