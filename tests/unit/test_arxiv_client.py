"""The arXiv client against a fake arXiv (httpx.MockTransport) and fakeredis."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fakeredis
import httpx
import pytest

from schemas.research import ArxivUsage
from tasks.arxiv_client import EMPTY_ANSWER_TTL_SECONDS, ArxivClient
from tasks.cache import RedisJsonCache
from tasks.constants import ARXIV_CACHE_PREFIX, ARXIV_GATE_KEY
from tasks.errors import PermanentUpstreamError, TransientUpstreamError
from tasks.rate_gate import ArxivRateGate

FIXTURES = Path(__file__).parent.parent / "fixtures" / "arxiv"
API_URL = "https://export.arxiv.org/api/query"
QUERY = '(all:"sparse" OR all:"retrieval") AND cat:cs.CL'
INTERVAL = 3.0

Handler = Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def atom(name: str, status_code: int = 200) -> httpx.Response:
    return httpx.Response(
        status_code, content=fixture(name), headers={"Content-Type": "application/atom+xml"}
    )


@dataclass
class FakeArxiv:
    """Answers each request with `handler`, and remembers what it was asked."""

    handler: Handler
    requests: list[httpx.Request]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@dataclass
class Harness:
    client: ArxivClient
    arxiv: FakeArxiv
    redis: fakeredis.FakeRedis
    slept: list[float]


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    http_clients: list[httpx.Client] = []

    def make(
        handler: Handler,
        *,
        cache_ttl_seconds: int = 3600,
        max_body_bytes: int = 20_000_000,
        timeout_seconds: float = 5.0,
    ) -> Harness:
        redis_client = fakeredis.FakeRedis()
        slept: list[float] = []
        arxiv = FakeArxiv(handler, [])
        http = httpx.Client(transport=httpx.MockTransport(arxiv))
        http_clients.append(http)
        client = ArxivClient(
            http,
            API_URL,
            ArxivRateGate(redis_client, INTERVAL, key=ARXIV_GATE_KEY, sleep=slept.append),
            RedisJsonCache(redis_client, ARXIV_CACHE_PREFIX, cache_ttl_seconds),
            timeout_seconds=timeout_seconds,
            max_body_bytes=max_body_bytes,
        )
        return Harness(client, arxiv, redis_client, slept)

    yield make
    for http in http_clients:
        http.close()


def test_a_search_sends_one_get_carrying_the_query(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(lambda request: atom("search_current.xml"))

    result = harness.client.search(QUERY, max_results=15)

    # Then one GET reached arXiv with the query, the page size and the sort order
    [request] = harness.arxiv.requests
    assert request.method == "GET"
    assert request.url.copy_with(query=None) == API_URL
    assert request.url.params["search_query"] == QUERY
    assert request.url.params["max_results"] == "15"
    assert request.url.params["start"] == "0"
    assert request.url.params["sortBy"] == "relevance"
    assert request.url.params["sortOrder"] == "descending"
    # And the URL reported for provenance is exactly the one sent
    assert result.request_url == str(request.url)
    assert result.request_url.startswith(API_URL + "?search_query=")


def test_a_search_returns_the_parsed_feed(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(lambda request: atom("search_current.xml"))

    result = harness.client.search(QUERY, max_results=4)

    assert result.feed.total_results == 4821
    assert [paper.arxiv_id for paper in result.feed.papers][:2] == ["2501.04321", "2407.11873"]
    assert result.from_cache is False
    assert result.gate_wait_seconds == 0.0


def test_a_repeated_search_is_served_from_the_cache(make_harness: Callable[..., Harness]) -> None:
    # Given a search already answered by arXiv
    harness = make_harness(lambda request: atom("search_current.xml"))
    first = harness.client.search(QUERY, max_results=4)

    # When the same search comes again
    second = harness.client.search(QUERY, max_results=4)

    # Then arXiv is not asked again, the gate is not spent, and the papers are the same
    assert len(harness.arxiv.requests) == 1
    assert harness.slept == []
    assert second.from_cache is True
    assert second.gate_wait_seconds == 0.0
    assert second.feed == first.feed
    assert second.request_url == first.request_url
    # The cache key is the sha256 of the URL sent.
    url_digest = hashlib.sha256(first.request_url.encode()).hexdigest()
    assert harness.redis.exists(ARXIV_CACHE_PREFIX + url_digest) == 1


def test_a_cache_hit_leaves_the_gate_slot_for_the_next_request(
    make_harness: Callable[..., Harness],
) -> None:
    # Given one request sent and then one cache hit
    harness = make_harness(lambda request: atom("search_current.xml"))
    harness.client.search(QUERY, max_results=4)
    harness.client.search(QUERY, max_results=4)

    # When a different search follows
    third = harness.client.search(QUERY, max_results=5)

    # Then it waits one interval after the first request, not two
    assert len(harness.arxiv.requests) == 2
    assert INTERVAL - 0.5 <= third.gate_wait_seconds <= INTERVAL
    assert harness.slept == [third.gate_wait_seconds]


def test_a_damaged_cache_entry_is_a_miss(make_harness: Callable[..., Harness]) -> None:
    # Given a cached value of the wrong shape under the search's key
    harness = make_harness(lambda request: atom("search_current.xml"))
    url = harness.client.search(QUERY, max_results=4).request_url
    key = ARXIV_CACHE_PREFIX + hashlib.sha256(url.encode()).hexdigest()
    harness.redis.set(key, '{"papers": [{"title": "half a paper"}]}')

    # When the search comes again
    result = harness.client.search(QUERY, max_results=4)

    # Then arXiv is asked again and the answer is whole
    assert result.from_cache is False
    assert len(harness.arxiv.requests) == 2
    assert len(result.feed.papers) == 4


def test_without_a_cache_every_search_asks_arxiv(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(lambda request: atom("search_current.xml"), cache_ttl_seconds=0)

    harness.client.search(QUERY, max_results=4)
    harness.client.search(QUERY, max_results=4)

    assert len(harness.arxiv.requests) == 2


def test_an_empty_result_is_cached_only_briefly(make_harness: Callable[..., Harness]) -> None:
    # Given a query arXiv has no result for
    harness = make_harness(lambda request: atom("empty.xml"))
    first = harness.client.search(QUERY, max_results=10)

    # When the same search comes again
    second = harness.client.search(QUERY, max_results=10)

    # Then the cache answers, but keeps the empty answer for minutes, not hours
    assert (first.feed.total_results, first.feed.papers) == (0, [])
    assert second.from_cache is True
    assert len(harness.arxiv.requests) == 1
    key = ARXIV_CACHE_PREFIX + hashlib.sha256(first.request_url.encode()).hexdigest()
    assert 0 < harness.redis.ttl(key) <= EMPTY_ANSWER_TTL_SECONDS


def test_an_empty_page_of_a_query_with_results_is_worth_a_retry(
    make_harness: Callable[..., Harness],
) -> None:
    # Given arXiv's occasional fluke: results reported, none sent
    body = fixture("empty.xml").replace(
        b"<opensearch:totalResults>0<", b"<opensearch:totalResults>214<"
    )
    harness = make_harness(lambda request: httpx.Response(200, content=body))

    with pytest.raises(TransientUpstreamError, match="empty page"):
        harness.client.search(QUERY, max_results=10)


@pytest.mark.parametrize("status_code", [429, 503])
def test_overload_with_retry_after_seconds_is_transient(
    make_harness: Callable[..., Harness], status_code: int
) -> None:
    harness = make_harness(
        lambda request: httpx.Response(status_code, headers={"Retry-After": "120"})
    )

    with pytest.raises(TransientUpstreamError) as raised:
        harness.client.search(QUERY, max_results=10)

    assert raised.value.retry_after == 120.0
    assert str(status_code) in raised.value.message


def test_a_server_error_without_retry_after_is_transient_and_not_cached(
    make_harness: Callable[..., Harness],
) -> None:
    # Given arXiv failing once, then answering
    answers = iter([httpx.Response(500), atom("search_current.xml")])
    harness = make_harness(lambda request: next(answers))

    # When the task tries, fails, and tries again
    with pytest.raises(TransientUpstreamError) as raised:
        harness.client.search(QUERY, max_results=4)
    retried = harness.client.search(QUERY, max_results=4)

    # Then the failure had no Retry-After, and the retry reached arXiv
    assert raised.value.retry_after is None
    assert retried.from_cache is False
    assert len(retried.feed.papers) == 4


def test_arxivs_error_feed_is_permanent_with_its_message(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(lambda request: atom("error_http400.xml", status_code=400))

    with pytest.raises(PermanentUpstreamError) as raised:
        harness.client.search(QUERY, max_results=10)
    with pytest.raises(PermanentUpstreamError):
        harness.client.search(QUERY, max_results=10)

    assert raised.value.message == "arXiv rejected the query: incorrect id format for 2501.xyz"
    # Errors are never cached: the second attempt asked arXiv too.
    assert len(harness.arxiv.requests) == 2


def test_a_400_without_an_error_feed_reports_the_status(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(lambda request: httpx.Response(400, text="<html>nope</html>"))

    with pytest.raises(PermanentUpstreamError, match="HTTP 400 Bad Request"):
        harness.client.search(QUERY, max_results=10)


def test_an_error_feed_sent_with_200_is_permanent(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(lambda request: atom("error_http400.xml", status_code=200))

    with pytest.raises(PermanentUpstreamError, match=r"incorrect id format for 2501\.xyz"):
        harness.client.search(QUERY, max_results=10)


@pytest.mark.parametrize("status_code", [301, 403, 404, 410])
def test_other_statuses_are_permanent(
    make_harness: Callable[..., Harness], status_code: int
) -> None:
    harness = make_harness(lambda request: httpx.Response(status_code))

    with pytest.raises(PermanentUpstreamError, match=f"HTTP {status_code}"):
        harness.client.search(QUERY, max_results=10)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.ConnectError,
        httpx.ReadError,
        httpx.RemoteProtocolError,
    ],
)
def test_timeouts_and_broken_connections_are_transient(
    make_harness: Callable[..., Harness], failure: type[httpx.TransportError]
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure("connection trouble", request=request)

    harness = make_harness(fail)

    with pytest.raises(TransientUpstreamError) as raised:
        harness.client.search(QUERY, max_results=10)

    assert raised.value.retry_after is None
    assert isinstance(raised.value.__cause__, failure)


def test_a_truncated_body_is_transient(make_harness: Callable[..., Harness]) -> None:
    body = fixture("search_current.xml")
    harness = make_harness(lambda request: httpx.Response(200, content=body[:3000]))

    with pytest.raises(TransientUpstreamError, match="malformed feed"):
        harness.client.search(QUERY, max_results=10)


def test_an_entity_bomb_is_refused_quickly(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(lambda request: atom("billion_laughs.xml"))

    started = time.perf_counter()
    with pytest.raises(PermanentUpstreamError, match="refused"):
        harness.client.search(QUERY, max_results=1)

    assert time.perf_counter() - started < 1.0


def test_an_oversized_body_is_refused_without_reading_it_all(
    make_harness: Callable[..., Harness],
) -> None:
    # Given a response streamed in 1 KB chunks, far longer than the limit
    chunks_sent: list[int] = []

    def endless_body() -> Iterator[bytes]:
        for index in range(10_000):
            chunks_sent.append(index)
            yield b"x" * 1024

    harness = make_harness(
        lambda request: httpx.Response(200, content=endless_body()), max_body_bytes=10_000
    )

    # Then the client gives up once past the limit
    with pytest.raises(PermanentUpstreamError, match="larger than 10000 bytes"):
        harness.client.search(QUERY, max_results=10)
    assert len(chunks_sent) < 20


def test_a_declared_oversized_body_is_refused_before_reading(
    make_harness: Callable[..., Harness],
) -> None:
    chunks_sent: list[bytes] = []

    def body() -> Iterator[bytes]:
        chunks_sent.append(b"x")
        yield b"x"

    harness = make_harness(
        lambda request: httpx.Response(200, content=body(), headers={"Content-Length": "50000000"}),
        max_body_bytes=10_000,
    )

    with pytest.raises(PermanentUpstreamError, match="larger than"):
        harness.client.search(QUERY, max_results=10)
    assert chunks_sent == []


def test_a_body_trickling_past_the_timeout_is_transient(
    make_harness: Callable[..., Harness],
) -> None:
    # Given a server that sends each chunk in time, but the whole body too slowly
    def trickle() -> Iterator[bytes]:
        for _ in range(100):  # two seconds in all
            time.sleep(0.02)
            yield b" "

    harness = make_harness(
        lambda request: httpx.Response(200, content=trickle()), timeout_seconds=0.2
    )

    started = time.perf_counter()
    with pytest.raises(TransientUpstreamError, match="not received within"):
        harness.client.search(QUERY, max_results=10)
    assert time.perf_counter() - started < 1.0


def test_the_jobs_ledger_counts_every_request_sent_and_every_cache_hit(
    make_harness: Callable[..., Harness],
) -> None:
    # Given arXiv failing once, then answering, and a job's ledger
    answers = iter([httpx.Response(503), atom("search_current.xml")])
    harness = make_harness(lambda request: next(answers))
    usage = ArxivUsage()

    # When the search fails, is tried again, and then repeated from the cache
    with pytest.raises(TransientUpstreamError):
        harness.client.search(QUERY, max_results=4, usage=usage)
    harness.client.search(QUERY, max_results=4, usage=usage)
    cached = harness.client.search(QUERY, max_results=4, usage=usage)

    # Then both requests sent are counted, the failed one too, and the hit apart
    assert (usage.requests, usage.cache_hits) == (2, 1)
    assert usage.gate_wait_ms == round(sum(harness.slept) * 1000, 3)
    # And the cached answer's provenance entry says where it came from
    assert cached.source == "cache:" + cached.request_url
