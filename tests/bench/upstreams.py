"""The benchmark's arXiv and LLM servers, each in a child process of its own.

Running the fakes out of process keeps their CPU (one thread per connection,
XML rendering) off the process that measures. The parent talks to each child
over a pipe: set the latency, count or forget recorded requests, stop.

`FreshPapersArxivServer` answers every distinct search with papers nobody has
seen: new arXiv ids (so no summary is cached) whose text carries the query's
words (so ranking has something to score, and the memory of earlier jobs, whose
papers share no word with the query, recalls nothing). The text itself comes
from the fakes' default corpus, so feeds are the size real ones are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import re
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from tests.support import FakeHTTPServer
from tests.support.arxiv_corpus import CorpusPaper, default_corpus
from tests.support.fake_arxiv import FakeArxivServer, render_feed
from tests.support.fake_openai import FakeOpenAIServer

UpstreamKind = Literal["arxiv", "openai"]
_QUOTED_TERM = re.compile(r'all:"([^"]+)"')
# How many matches arXiv reports for a fresh query (beyond the page it returns).
_REPORTED_TOTAL = 400


class FreshPapersArxivServer(FakeArxivServer):
    """The arXiv API where each distinct search_query finds papers of its own.

    The same query asked again gets the same papers (a repeat job); a new
    query gets papers with arXiv ids never served before.
    """

    def __init__(self, latency_seconds: float = 0.0) -> None:
        super().__init__(latency_seconds=latency_seconds)
        self._templates = default_corpus()
        self._slots: dict[str, int] = {}
        self._slots_lock = threading.Lock()

    def search(self, params: dict[str, str]) -> str:
        search_query = params.get("search_query", "")
        max_results = int(params.get("max_results", "10"))
        with self._slots_lock:
            slot = self._slots.setdefault(search_query, len(self._slots))
        words = _QUOTED_TERM.findall(search_query) or ["benchmark"]
        papers = [self._paper(slot, rank, words) for rank in range(max_results)]
        return render_feed(
            papers,
            search_query=search_query,
            id_list="",
            start=0,
            max_results=max_results,
            total_results=_REPORTED_TOTAL,
        )

    def _paper(self, slot: int, rank: int, words: list[str]) -> CorpusPaper:
        template = self._templates[(slot * 53 + rank * 7) % len(self._templates)]
        # YYMM.NNNNN: 12 months of 99 999 numbers, each (slot, rank) its own id.
        serial = slot * 64 + rank
        month, number = divmod(serial, 99_999)
        arxiv_id = f"24{month % 12 + 1:02d}.{number + 1:05d}"
        # Better-ranked papers mention more of the query's words.
        mentioned = " ".join(words[: max(1, len(words) - rank % len(words))])
        return dataclasses.replace(
            template,
            arxiv_id=arxiv_id,
            title=f"{template.title}: {mentioned}",
            abstract=f"We study {mentioned}. {template.abstract}",
        )


def _build(kind: UpstreamKind, latency_seconds: float) -> FakeHTTPServer:
    if kind == "arxiv":
        return FreshPapersArxivServer(latency_seconds)
    return FakeOpenAIServer(latency_seconds=latency_seconds)


def _serve(kind: UpstreamKind, latency_seconds: float, control: Connection) -> None:
    """The child's main: serve, and answer the parent's commands until told to stop."""
    server = _build(kind, latency_seconds)
    server.start()
    control.send(server.url)
    commands: dict[str, Callable[..., Any]] = {
        "latency": lambda seconds: setattr(server, "latency_seconds", seconds),
        "count": lambda suffix: sum(1 for r in server.requests if r.path.endswith(suffix)),
        "clear": server.clear,
    }
    try:
        while True:
            command, *args = control.recv()
            if command == "stop":
                break
            control.send(commands[command](*args))
    except EOFError:  # the parent went away
        pass
    finally:
        server.stop()


class UpstreamProcess:
    """One fake upstream in a child process: its `url`, its latency and a few controls.

    It stands where the in-process fake would (`tests.support.stack.Upstream`).
    """

    def __init__(self, kind: UpstreamKind, latency_seconds: float = 0.0) -> None:
        self.kind = kind
        self._latency_seconds = latency_seconds
        self._process: BaseProcess | None = None
        self._control: Connection | None = None
        self._url: str | None = None

    def start(self) -> None:
        """Spawn the child and wait until it serves."""
        context = multiprocessing.get_context("spawn")
        self._control, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(self.kind, self._latency_seconds, child_end),
            name=f"fake-{self.kind}",
        )
        self._process.start()
        child_end.close()
        if not self._control.poll(30):
            self.stop()
            raise TimeoutError(f"fake {self.kind} server did not start")
        self._url = self._control.recv()

    @property
    def url(self) -> str:
        """The URL a worker is pointed at (the OpenAI fake's is its base URL)."""
        assert self._url is not None, f"fake {self.kind} not started"
        return self._url

    def _ask(self, *command: Any) -> Any:
        assert self._control is not None, f"fake {self.kind} not started"
        self._control.send(command)
        return self._control.recv()

    @property
    def latency_seconds(self) -> float:
        """How long the child waits before each answer; setting it applies to later answers."""
        return self._latency_seconds

    @latency_seconds.setter
    def latency_seconds(self, seconds: float) -> None:
        self._ask("latency", seconds)
        self._latency_seconds = seconds

    def count(self, path_suffix: str = "") -> int:
        """How many requests whose path ends with `path_suffix` were received."""
        result: int = self._ask("count", path_suffix)
        return result

    def clear(self) -> None:
        """Forget the requests recorded so far."""
        self._ask("clear")

    def stop(self) -> None:
        """Stop the child (asked, then killed if it does not go). Idempotent."""
        process, control = self._process, self._control
        self._process = self._control = None
        self._url = None
        if process is None or control is None:
            return
        if process.is_alive():
            with contextlib.suppress(OSError):  # the child is gone already
                control.send(("stop",))
            process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
        control.close()
