"""One arXiv API search: response cache, global rate gate, one GET, parsed feed.

The client never retries and never sleeps except at the rate gate: a failure is
raised as TransientUpstreamError (worth a retry; carries the server's
Retry-After) or PermanentUpstreamError, and the Celery task decides whether to
retry, with a countdown rather than a sleep inside the worker.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from schemas.research import ArxivUsage, Paper
from tasks.arxiv_feed import ArxivFeed, arxiv_error_message, parse_feed
from tasks.arxiv_query import build_query_params
from tasks.cache import RedisJsonCache
from tasks.errors import PermanentUpstreamError, TransientUpstreamError
from tasks.rate_gate import ArxivRateGate
from tasks.retry import retry_after_seconds
from tasks.usage import add_arxiv_cache_hit, add_arxiv_request

_SERVICE = "arxiv"
# provenance.sources names a URL answered from the response cache with this prefix.
CACHED_SOURCE_PREFIX = "cache:"
# A query arXiv reports no result for is cached briefly: long enough that a
# repeat job does not spend a gate slot on it again, short enough that one of
# arXiv's rare empty flukes does not stick.
EMPTY_ANSWER_TTL_SECONDS = 600


@dataclass(frozen=True)
class ArxivSearchResult:
    """What one search produced, and how: from the cache or from arXiv after the gate."""

    feed: ArxivFeed
    request_url: str  # the full URL with its query string, as sent (for provenance "sources")
    from_cache: bool
    gate_wait_seconds: float  # time spent waiting for the global rate gate; 0 on a cache hit

    @property
    def source(self) -> str:
        """The provenance "sources" entry: the URL, prefixed "cache:" when the cache answered."""
        return CACHED_SOURCE_PREFIX + self.request_url if self.from_cache else self.request_url


class _CachedFeed(BaseModel):
    """The cached form of an ArxivFeed; a cached value of any other shape is a miss."""

    total_results: int
    start_index: int
    papers: list[Paper]


class ArxivClient:
    """Searches the arXiv API politely: cached, rate-gated, size- and time-bounded."""

    def __init__(
        self,
        http: httpx.Client,
        api_url: str,
        gate: ArxivRateGate,
        cache: RedisJsonCache | None,
        timeout_seconds: float,
        max_body_bytes: int = 20_000_000,
    ) -> None:
        """
        Args:
            http: the worker process's HTTP client (the caller opens and closes it).
            api_url: the query endpoint, e.g. https://export.arxiv.org/api/query.
            gate: the rate gate shared by every worker.
            cache: where parsed responses are kept; None to always ask arXiv.
            timeout_seconds: limit for connecting, for each read, and for the
                whole response body.
            max_body_bytes: a larger (decoded) body is refused rather than read.
        """
        self._http = http
        self._api_url = api_url
        self._gate = gate
        self._cache = cache
        self._timeout_seconds = timeout_seconds
        self._max_body_bytes = max_body_bytes

    @property
    def timeout_seconds(self) -> float:
        """The time limit of each request (connect, each read, the whole body)."""
        return self._timeout_seconds

    def with_timeout(self, timeout_seconds: float) -> ArxivClient:
        """This client with another time limit (e.g. what is left of a task's time)."""
        limited = copy.copy(self)
        limited._timeout_seconds = timeout_seconds
        return limited

    def search(
        self, search_query: str, max_results: int, usage: ArxivUsage | None = None
    ) -> ArxivSearchResult:
        """Fetch the first `max_results` papers for `search_query`, best first.

        Args:
            search_query: an arXiv search_query, as built by `build_search_query`.
            max_results: how many entries to ask for (1 to 2000).
            usage: a job's ledger, if any: the cache hit, or the request and
                its wait at the gate, are counted as they happen (a request
                that then fails is counted too).

        Raises:
            TransientUpstreamError: timeout, connection failure, HTTP 429 or 5xx,
                a truncated body, or an unexpectedly empty page; retry later.
            PermanentUpstreamError: arXiv rejected the query (its message is kept),
                another 4xx, a body over max_body_bytes, or a body that is not a feed.
        """
        request = self._http.build_request(
            "GET",
            self._api_url,
            params=build_query_params(search_query, max_results),
            timeout=self._timeout_seconds,
        )
        request_url = str(request.url)
        cache_key = hashlib.sha256(request_url.encode()).hexdigest()

        cached = self._cached_feed(cache_key)
        if cached is not None:
            if usage is not None:
                add_arxiv_cache_hit(usage)
            return ArxivSearchResult(cached, request_url, from_cache=True, gate_wait_seconds=0.0)

        waited = self._gate.wait_for_turn()
        if usage is not None:
            add_arxiv_request(usage, waited)
        feed = parse_feed(self._fetch(request))
        if not feed.papers and feed.total_results > feed.start_index:
            # arXiv now and then answers a valid, empty page for a query that has
            # results (lukasschwab/arxiv.py#43); asking again usually works.
            raise TransientUpstreamError(
                _SERVICE, f"empty page although arXiv reports {feed.total_results} results"
            )
        if self._cache is not None:
            ttl = None if feed.papers else EMPTY_ANSWER_TTL_SECONDS
            self._cache.set(cache_key, _to_cache(feed), ttl_seconds=ttl)
        return ArxivSearchResult(feed, request_url, from_cache=False, gate_wait_seconds=waited)

    def _cached_feed(self, cache_key: str) -> ArxivFeed | None:
        if self._cache is None:
            return None
        cached = self._cache.get(cache_key)
        if cached is None:
            return None
        try:
            stored = _CachedFeed.model_validate(cached)
        except ValidationError:
            return None  # written by an older version, or damaged: ask arXiv again
        return ArxivFeed(stored.total_results, stored.start_index, stored.papers)

    def _fetch(self, request: httpx.Request) -> bytes:
        """Send `request`; the body of a 200 response, or the matching upstream error."""
        try:
            response = self._http.send(request, stream=True)
            try:
                return self._body_of(response)
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            raise TransientUpstreamError(
                _SERVICE, f"no answer within {self._timeout_seconds:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise PermanentUpstreamError(_SERVICE, f"cannot call {request.url}: {exc}") from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # Connection refused or reset, protocol error, a compressed body cut short.
            raise TransientUpstreamError(_SERVICE, f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise PermanentUpstreamError(_SERVICE, f"{type(exc).__name__}: {exc}") from exc

    def _body_of(self, response: httpx.Response) -> bytes:
        status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientUpstreamError(_SERVICE, status, retry_after_seconds(response.headers))
        if response.status_code == 400:
            message = arxiv_error_message(self._read_capped(response))
            detail = f"arXiv rejected the query: {message}" if message else status
            raise PermanentUpstreamError(_SERVICE, detail)
        if response.status_code != 200:
            raise PermanentUpstreamError(_SERVICE, status)
        return self._read_capped(response)

    def _read_capped(self, response: httpx.Response) -> bytes:
        """Read the body, stopping as soon as it exceeds max_body_bytes or the timeout."""
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise self._too_large()
        # httpx's timeout bounds each read, not the whole body: a server trickling
        # bytes could otherwise hold the worker for as long as it likes.
        deadline = time.monotonic() + self._timeout_seconds
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self._max_body_bytes:
                raise self._too_large()
            if time.monotonic() > deadline:
                raise TransientUpstreamError(
                    _SERVICE, f"body not received within {self._timeout_seconds:g} s"
                )
        return bytes(body)

    def _too_large(self) -> PermanentUpstreamError:
        return PermanentUpstreamError(
            _SERVICE, f"response body larger than {self._max_body_bytes} bytes"
        )


def _to_cache(feed: ArxivFeed) -> dict[str, Any]:
    stored = _CachedFeed(
        total_results=feed.total_results, start_index=feed.start_index, papers=feed.papers
    )
    return stored.model_dump(mode="json")
