"""The fake arXiv API: the current Atom layout, honest search, paging, errors and faults."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

import httpx
import pytest
from defusedxml import ElementTree
from defusedxml.common import EntitiesForbidden

from tests.support.arxiv_corpus import TOPIC_KEYS, CorpusPaper, default_corpus
from tests.support.fake_arxiv import FakeArxivServer, Fault

NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
    "arxiv": "http://arxiv.org/schemas/atom",
}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def get(http: httpx.Client, server: FakeArxivServer, **params: str | int) -> httpx.Response:
    return http.get(server.url, params=params)


def parse(response: httpx.Response) -> Element:
    feed: Element = ElementTree.fromstring(response.content)
    return feed


def opensearch(feed: Element, name: str) -> int:
    return int(feed.findtext(f"opensearch:{name}", namespaces=NS) or -1)


def entry_ids(feed: Element) -> list[str]:
    """Ids without version, e.g. "2101.01234"."""
    ids = [entry.findtext("atom:id", namespaces=NS) or "" for entry in entries(feed)]
    return [re.sub(r"^http://arxiv\.org/abs/|v\d+$", "", i) for i in ids]


def entries(feed: Element) -> list[Element]:
    return feed.findall("atom:entry", NS)


def corpus_by_id() -> dict[str, CorpusPaper]:
    return {paper.arxiv_id: paper for paper in default_corpus()}


def has_word(paper: CorpusPaper, *words: str) -> bool:
    text = " ".join([paper.title, paper.abstract, paper.comment or "", paper.journal_ref or ""])
    return any(re.search(rf"\b{word}\b", text, re.IGNORECASE) for word in words)


# --- the corpus ------------------------------------------------------------------------


def test_default_corpus_is_deterministic_and_plausible() -> None:
    corpus = default_corpus()

    assert corpus == default_corpus()
    assert len(corpus) >= 200
    assert {paper.topic for paper in corpus} == set(TOPIC_KEYS)
    assert len({paper.arxiv_id for paper in corpus}) == len(corpus)
    assert all(1000 <= len(paper.abstract) <= 1500 for paper in corpus)
    assert all(1 <= len(paper.authors) <= 12 for paper in corpus)
    assert any(not name.isascii() for paper in corpus for name in paper.authors)
    assert {paper.published.year for paper in corpus} <= set(range(2015, 2027))
    assert {paper.version for paper in corpus} == {1, 2, 3}
    assert any(paper.doi for paper in corpus) and any(paper.journal_ref for paper in corpus)
    assert all(re.fullmatch(r"\d{4}\.\d{5}", paper.arxiv_id) for paper in corpus)


# --- the feed --------------------------------------------------------------------------


def test_a_search_answers_in_arxivs_current_atom_layout(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    response = get(http, fake_arxiv, search_query='all:"graph neural networks"', max_results=2)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    assert response.text.startswith(
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
        'xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">'
    )
    feed = parse(response)
    assert feed.findtext("atom:title", namespaces=NS, default="").startswith("arXiv Query: ")
    assert opensearch(feed, "itemsPerPage") == 2
    assert opensearch(feed, "startIndex") == 0
    assert opensearch(feed, "totalResults") > 2
    assert len(entries(feed)) == 2

    entry = entries(feed)[0]
    # Child elements in the order export.arxiv.org writes them.
    tags = " ".join(child.tag.split("}")[1] for child in entry)
    assert re.fullmatch(
        r"id title updated link link summary( category)+ published( comment)? "
        r"primary_category( journal_ref)?( author)+( doi link)?",
        tags,
    ), tags
    versioned_id = entry.findtext("atom:id", namespaces=NS, default="")
    assert re.fullmatch(r"http://arxiv\.org/abs/\d{4}\.\d{5}v\d", versioned_id)
    links = {
        link.get("title") or link.get("rel"): link.get("href")
        for link in entry.findall("atom:link", NS)
    }
    assert links["alternate"] == versioned_id.replace("http://", "https://")
    assert links["pdf"] == versioned_id.replace("http://arxiv.org/abs/", "https://arxiv.org/pdf/")
    primary = entry.find("arxiv:primary_category", NS)
    assert primary is not None
    assert primary.get("term") == entry.findall("atom:category", NS)[0].get("term")


def test_a_paper_is_rendered_with_all_its_metadata(http: httpx.Client) -> None:
    paper = CorpusPaper(
        arxiv_id="2401.00001",
        version=2,
        title="Tiny <models> & big claims",
        abstract="We study small models. They do well.",
        authors=("Zoë Ødegård", "Jürgen Weiß"),
        categories=("cs.CL", "cs.AI"),
        published=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        updated=datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC),
        doi="10.1234/tiny.2024.1",
        journal_ref="Tiny Journal 1, 2 (2024)",
        comment="4 pages",
    )
    with FakeArxivServer(corpus=[paper]) as server:
        feed = parse(get(http, server, search_query="all:models"))

    [entry] = entries(feed)
    assert entry.findtext("atom:id", namespaces=NS) == "http://arxiv.org/abs/2401.00001v2"
    assert entry.findtext("atom:title", namespaces=NS) == "Tiny <models> & big claims"
    assert entry.findtext("atom:published", namespaces=NS) == "2024-01-02T03:04:05Z"
    assert entry.findtext("atom:updated", namespaces=NS) == "2024-02-03T04:05:06Z"
    names = [a.findtext("atom:name", namespaces=NS) for a in entry.findall("atom:author", NS)]
    assert names == ["Zoë Ødegård", "Jürgen Weiß"]
    assert entry.findtext("arxiv:doi", namespaces=NS) == "10.1234/tiny.2024.1"
    assert entry.findtext("arxiv:journal_ref", namespaces=NS) == "Tiny Journal 1, 2 (2024)"
    assert entry.findtext("arxiv:comment", namespaces=NS) == "4 pages"
    doi_link = entry.find("atom:link[@title='doi']", NS)
    assert doi_link is not None and doi_link.get("href") == "https://doi.org/10.1234/tiny.2024.1"


# --- search semantics ------------------------------------------------------------------


def test_search_reports_the_true_total_and_ranks_by_matching_terms(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    # The query our worker builds: each word a quoted all: term, OR-ed.
    query = '(all:"protein" OR all:"folding")'
    expected = [p for p in default_corpus() if has_word(p, "protein", "folding")]

    feed = parse(get(http, fake_arxiv, search_query=query, max_results=2000))

    assert opensearch(feed, "totalResults") == len(expected)
    assert set(entry_ids(feed)) == {p.arxiv_id for p in expected}
    papers = corpus_by_id()
    matched_terms = [
        sum(has_word(papers[i], word) for word in ("protein", "folding")) for i in entry_ids(feed)
    ]
    assert matched_terms == sorted(matched_terms, reverse=True)
    assert matched_terms[0] == 2 and matched_terms[-1] == 1


def test_categories_filter_primary_and_cross_lists(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    query = '(all:"learning" OR all:"graph") AND (cat:stat.ML OR cat:cs.SI)'
    expected = {
        p.arxiv_id
        for p in default_corpus()
        if has_word(p, "learning", "graph") and {"stat.ML", "cs.SI"} & set(p.categories)
    }

    feed = parse(get(http, fake_arxiv, search_query=query, max_results=500))

    assert expected and set(entry_ids(feed)) == expected
    assert opensearch(feed, "totalResults") == len(expected)


@pytest.mark.parametrize(
    "date_range", ["[202101010000 TO 202112312359]", '"202101010000 TO 202112312359"']
)
def test_submitted_date_filters_on_the_first_version(
    http: httpx.Client, fake_arxiv: FakeArxivServer, date_range: str
) -> None:
    query = f"cat:cs.LG AND submittedDate:{date_range}"
    expected = {
        p.arxiv_id for p in default_corpus() if "cs.LG" in p.categories and p.published.year == 2021
    }

    feed = parse(get(http, fake_arxiv, search_query=query, max_results=500))

    assert expected and set(entry_ids(feed)) == expected


def test_start_and_max_results_page_through_the_same_ranking(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    query = 'all:"reinforcement" OR all:"policy"'
    whole = parse(get(http, fake_arxiv, search_query=query, start=0, max_results=20))
    first = parse(get(http, fake_arxiv, search_query=query, start=0, max_results=10))
    second = parse(get(http, fake_arxiv, search_query=query, start=10, max_results=10))
    beyond = parse(get(http, fake_arxiv, search_query=query, start=5000, max_results=10))

    assert entry_ids(first) + entry_ids(second) == entry_ids(whole)
    assert opensearch(second, "startIndex") == 10
    assert opensearch(second, "itemsPerPage") == 10
    assert entries(beyond) == []
    assert opensearch(beyond, "totalResults") == opensearch(whole, "totalResults") > 20


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"search_query": 'all:"unclosed'}, "cannot parse"),
        ({"search_query": "(all:graph"}, "unbalanced"),
        ({"search_query": "all:graph AND"}, "expected a search term"),
        ({"search_query": "nosuchfield:graph"}, "unknown field"),
        ({"search_query": "submittedDate:[2020 TO 2021]"}, "bad date"),
        ({"search_query": "all:graph", "max_results": "ten"}, "max_results"),
        ({"search_query": "all:graph", "max_results": "2001"}, "max_results"),
        ({"search_query": "all:graph", "sortBy": "citations"}, "sortBy"),
        ({"id_list": "abc"}, "incorrect id format for abc"),
    ],
)
def test_garbage_is_http_400_with_arxivs_error_feed(
    http: httpx.Client, fake_arxiv: FakeArxivServer, params: dict[str, str], message: str
) -> None:
    response = http.get(fake_arxiv.url, params=params)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = parse(response)
    assert opensearch(feed, "totalResults") == 1
    [entry] = entries(feed)
    assert entry.findtext("atom:title", namespaces=NS) == "Error"
    assert entry.findtext("atom:id", namespaces=NS, default="").startswith(
        "https://arxiv.org/api/errors#"
    )
    assert message in entry.findtext("atom:summary", namespaces=NS, default="")
    assert entry.findtext("atom:author/atom:name", namespaces=NS) == "arXiv api core"


def test_id_list_selects_papers(http: httpx.Client, fake_arxiv: FakeArxivServer) -> None:
    wanted = [p.arxiv_id for p in default_corpus()[:3]]

    feed = parse(get(http, fake_arxiv, id_list=f"{wanted[0]}v1,{wanted[1]},{wanted[2]}"))

    assert sorted(entry_ids(feed)) == sorted(wanted)


# --- recording -------------------------------------------------------------------------


def test_every_request_is_recorded_until_cleared(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    before = time.monotonic()
    get(http, fake_arxiv, search_query="all:graph", start=0, max_results=5)
    get(http, fake_arxiv, search_query="all:quantum", start=5, max_results=5)

    first, second = fake_arxiv.requests
    assert first.path == "/api/query"
    assert first.params == {"search_query": "all:graph", "start": "0", "max_results": "5"}
    assert second.params["search_query"] == "all:quantum"
    assert before <= first.time <= second.time <= time.monotonic()

    fake_arxiv.inject(Fault.status(500))
    fake_arxiv.clear()
    assert fake_arxiv.requests == [] and fake_arxiv.pending_faults == []


# --- faults ----------------------------------------------------------------------------


def test_status_faults_carry_retry_after_and_are_served_once_each_in_order(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    fake_arxiv.inject(Fault.status(503, retry_after=2), Fault.rate_limited(1.5), Fault.status(500))

    unavailable = get(http, fake_arxiv, search_query="all:graph")
    limited = get(http, fake_arxiv, search_query="all:graph")
    broken = get(http, fake_arxiv, search_query="all:graph")
    healthy = get(http, fake_arxiv, search_query="all:graph")

    assert (unavailable.status_code, unavailable.headers["retry-after"]) == (503, "2")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")  # rounded up
    assert broken.status_code == 500 and "retry-after" not in broken.headers
    assert healthy.status_code == 200
    assert len(fake_arxiv.requests) == 4


def test_hang_outlasts_the_client_timeout(fake_arxiv: FakeArxivServer) -> None:
    fake_arxiv.inject(Fault.hang(5))
    with httpx.Client(timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            get(http, fake_arxiv, search_query="all:graph")
        assert get(http, fake_arxiv, search_query="all:graph").status_code == 200


def test_reset_drops_the_connection_without_a_response(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    fake_arxiv.inject(Fault.reset())

    with pytest.raises(httpx.ReadError):
        get(http, fake_arxiv, search_query="all:graph")


def test_truncated_sends_a_200_and_half_the_body(fake_arxiv: FakeArxivServer) -> None:
    fake_arxiv.inject(Fault.truncated())
    with (
        httpx.Client() as http,
        http.stream("GET", fake_arxiv.url, params={"search_query": "all:graph"}) as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_malformed_is_a_200_that_is_not_xml(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    fake_arxiv.inject(Fault.malformed())

    response = get(http, fake_arxiv, search_query="all:graph")

    assert response.status_code == 200
    with pytest.raises(ParseError):
        parse(response)


def test_entity_bomb_is_refused_by_a_safe_parser(
    http: httpx.Client, fake_arxiv: FakeArxivServer
) -> None:
    fake_arxiv.inject(Fault.entity_bomb())

    response = get(http, fake_arxiv, search_query="all:graph")

    assert response.status_code == 200
    assert "<!ENTITY lol9" in response.text
    with pytest.raises(EntitiesForbidden):
        parse(response)


def test_error_feed_fault_is_arxivs_400(http: httpx.Client, fake_arxiv: FakeArxivServer) -> None:
    fake_arxiv.inject(Fault.error_feed("incorrect id format for abc"))

    response = get(http, fake_arxiv, search_query="all:graph")

    assert response.status_code == 400
    [entry] = entries(parse(response))
    assert entry.findtext("atom:summary", namespaces=NS) == "incorrect id format for abc"
    assert entry.findtext("atom:id", namespaces=NS) == (
        "https://arxiv.org/api/errors#incorrect_id_format_for_abc"
    )


def test_faults_of_other_services_are_refused(fake_arxiv: FakeArxivServer) -> None:
    with pytest.raises(ValueError, match="does not serve"):
        fake_arxiv.inject(Fault.content("not an arXiv thing"))


def test_latency_can_change_while_running(http: httpx.Client, fake_arxiv: FakeArxivServer) -> None:
    fake_arxiv.latency_seconds = 0.3
    started = time.monotonic()
    get(http, fake_arxiv, search_query="all:graph")
    assert time.monotonic() - started >= 0.3

    fake_arxiv.latency_seconds = 0.0
    started = time.monotonic()
    get(http, fake_arxiv, search_query="all:graph")
    assert time.monotonic() - started < 0.3


# --- command line ----------------------------------------------------------------------


def test_runs_from_the_command_line_until_sigterm(http: httpx.Client) -> None:
    command = [sys.executable, "-m", "tests.support.fake_arxiv", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/query", url)
            assert http.get(url, params={"search_query": "all:graph"}).status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
