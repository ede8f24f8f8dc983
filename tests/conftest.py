"""Fixtures shared by every test: a private Redis, local arXiv and OpenAI servers, and a
whole stack per module for the suites that run real workers.

Nothing here uses a service already running on the machine: Redis is our own
child process on a free loopback port, and the two HTTP services are fakes
served from background threads of the test process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.arxiv_corpus import CorpusPaper
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.stack import QUICK_RETRIES, LocalStack, Stack
from worker.client import ResearchClient
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


# --- A stack per module (tests.support.stack) ----------------------------------------
# A suite or a module overrides `arxiv_corpus`, `worker_settings` or `redis_options`.


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
def arxiv_corpus() -> tuple[CorpusPaper, ...] | None:
    """The fake arXiv's corpus; None is the default synthetic one."""
    return None


@pytest.fixture(scope="module")
def worker_settings() -> Mapping[str, str]:
    """What every worker of the module's stack is configured with, beyond the wiring."""
    return QUICK_RETRIES


@pytest.fixture(scope="module")
def redis_options() -> dict[str, Any]:
    """Extra RedisServer arguments for the module's Redis."""
    return {}


@pytest.fixture(scope="module")
def stack(
    module_dir: Path,
    arxiv_corpus: tuple[CorpusPaper, ...] | None,
    worker_settings: Mapping[str, str],
    redis_options: dict[str, Any],
) -> Iterator[LocalStack]:
    """The module's Redis, fake arXiv and fake LLM, started when a test asks; workers on it."""
    with Stack(
        module_dir,
        arxiv=FakeArxivServer(arxiv_corpus),
        llm=FakeOpenAIServer(),
        settings=worker_settings,
        redis_options=redis_options,
    ) as started:
        yield started


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> ResearchClient:
    """A client on the module's stack, as an orchestrator has."""
    return stack.client()
