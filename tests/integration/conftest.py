"""A real stack per test module (the `stack` fixture of tests/conftest.py): a private Redis,
local arXiv and OpenAI servers, and real workers, running until the module's end.

A module may override `arxiv_corpus` (the fake arXiv's papers) and
`worker_settings` (what every worker is configured with; quick retries by default).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.stack import LocalStack, WorkerFactory

pytestmark = pytest.mark.integration


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
