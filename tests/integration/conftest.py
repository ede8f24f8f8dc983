"""A real stack per test module (`tests.support.stack`): a private Redis, local arXiv and
OpenAI servers, and real workers, started when a test asks and stopped at the module's end.

A module may override `arxiv_corpus` (the fake arXiv's papers) and
`worker_settings` (what every worker is configured with).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.arxiv_corpus import CorpusPaper
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.stack import QUICK_RETRIES, LocalStack, Stack, WorkerFactory
from worker.client import ResearchClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
def arxiv_corpus() -> tuple[CorpusPaper, ...] | None:
    """The fake arXiv's corpus; None is the default synthetic one."""
    return None


@pytest.fixture(scope="module")
def worker_settings() -> Mapping[str, str]:
    return QUICK_RETRIES


@pytest.fixture(scope="module")
def stack(
    module_dir: Path,
    arxiv_corpus: tuple[CorpusPaper, ...] | None,
    worker_settings: Mapping[str, str],
) -> Iterator[LocalStack]:
    with Stack(
        module_dir,
        arxiv=FakeArxivServer(arxiv_corpus),
        llm=FakeOpenAIServer(),
        settings=worker_settings,
    ) as started:
        yield started


@pytest.fixture(autouse=True)
def _clear_fakes(request: pytest.FixtureRequest) -> None:
    # The module's fakes start each test with no recorded requests, no faults, no latency.
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").clear_fakes()


@pytest.fixture(scope="module")
def arxiv_server(stack: LocalStack) -> FakeArxivServer:
    return stack.arxiv


@pytest.fixture(scope="module")
def llm_server(stack: LocalStack) -> FakeOpenAIServer:
    return stack.llm


@pytest.fixture(scope="module")
def worker_env(stack: LocalStack, module_dir: Path) -> dict[str, str]:
    """The module's worker environment, for processes other than workers (Flower, the sidecar)."""
    return stack.env(DATA_DIR=str(module_dir / "data"))


@pytest.fixture(scope="module")
def start_worker(stack: LocalStack) -> WorkerFactory:
    """Start a worker on the module's stack; it runs until the module's end."""
    return stack.start_worker


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> ResearchClient:
    return stack.client()
