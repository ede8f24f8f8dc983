"""Parsing arXiv's Atom feeds, current and legacy, into Papers."""

# ruff: noqa: RUF001  # Greek letters, dotless i and curly quotes are the test data

from __future__ import annotations

import time
import tracemalloc
from datetime import date
from pathlib import Path

import pytest

from tasks.arxiv_feed import arxiv_error_message, parse_feed, split_versioned_id
from tasks.errors import PermanentUpstreamError, TransientUpstreamError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "arxiv"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_a_current_feed_gives_its_totals_and_papers_in_order() -> None:
    feed = parse_feed(fixture("search_current.xml"))

    assert feed.total_results == 4821
    assert feed.start_index == 0
    assert [paper.arxiv_id for paper in feed.papers] == [
        "2501.04321",
        "2407.11873",
        "hep-th/0211045",
        "2312.00417",
    ]


def test_a_current_entry_is_read_in_full() -> None:
    paper = parse_feed(fixture("search_current.xml")).papers[0]

    assert paper.arxiv_id == "2501.04321"
    assert paper.version == 2
    assert paper.title == (
        "Sparse Retrieval-Augmented Generation with $ω$-Gated Memory for $σ$-Bounded Contexts"
    )
    assert paper.authors == ["Zoë Ångström", "Rafael Núñez-Ibáñez", "Mei-Ling Chén"]
    assert paper.url == "https://arxiv.org/abs/2501.04321v2"
    assert paper.pdf_url == "https://arxiv.org/pdf/2501.04321v2"
    assert paper.published_date == date(2025, 1, 8)
    assert paper.updated_date == date(2025, 3, 14)
    assert paper.categories == ["cs.CL", "cs.LG", "cs.IR"]
    assert paper.primary_category == "cs.CL"
    assert paper.doi == "10.18653/v1/2025.findings-naacl.071"
    assert paper.journal_ref == (
        "Findings of the Association for Computational Linguistics: NAACL 2025, pp. 1120-1134"
    )
    assert paper.summary is None
    assert paper.summary_method == "none"


def test_an_abstract_keeps_latex_unicode_and_entities_on_one_line() -> None:
    abstract = parse_feed(fixture("search_current.xml")).papers[0].abstract

    # The paragraph break (newline and two spaces) becomes one space; &lt; and &amp; decode.
    assert "whenever $σ < σ_0$. On three open-domain benchmarks" in abstract
    assert "$\\mathcal{O}(k \\log n)$" in abstract
    assert abstract.endswith("(μ = 0.93 ± 0.01). Code & data are released.")
    assert "\n" not in abstract


def test_thirty_four_authors_with_non_ascii_names_are_all_kept() -> None:
    paper = parse_feed(fixture("search_current.xml")).papers[1]

    assert len(paper.authors) == 34
    assert paper.authors[:3] == ["Øyvind Hålandsmo", "Łukasz Wróblewski", "Çağla Yıldırım"]
    assert "Olumide Adébáyọ̀" in paper.authors
    # Affiliations are not names.
    assert paper.authors[-1] == "A. B. van der Meer"
    assert not any("University" in author for author in paper.authors)
    assert paper.doi is None
    assert paper.journal_ref is None


def test_an_old_style_id_keeps_its_archive() -> None:
    paper = parse_feed(fixture("search_current.xml")).papers[2]

    assert (paper.arxiv_id, paper.version) == ("hep-th/0211045", 3)
    assert paper.url == "https://arxiv.org/abs/hep-th/0211045v3"
    assert paper.pdf_url == "https://arxiv.org/pdf/hep-th/0211045v3"
    assert paper.categories == ["hep-th", "gr-qc"]
    assert paper.published_date == date(2002, 11, 5)
    assert paper.doi == "10.1016/S0550-3213(03)00211-8"
    assert paper.journal_ref == "Nucl.Phys.B660:101-120,2003"
    # The old feed's two leading spaces are gone.
    assert paper.abstract.startswith("We compute the spectrum")


def test_a_legacy_feed_is_read_with_its_line_wraps_undone() -> None:
    # Given a 2016-format page: http links, inline namespaces, wrapped text
    feed = parse_feed(fixture("search_legacy_2016.xml"))

    # Then paging totals and the wrapped title and abstract come out clean
    assert (feed.total_results, feed.start_index) == (12, 10)
    paper = feed.papers[0]
    assert paper.title == (
        "Superfluid Response of Bosons Confined to Narrow Channels in the Dilute Limit"
    )
    assert paper.abstract.startswith("We study bosons confined to channels whose radius")
    assert 'one dimensional "Luttinger-like" theory below a crossover radius R_c < 1 nm.' in (
        paper.abstract
    )
    assert "\n" not in paper.abstract


def test_legacy_links_are_upgraded_to_https() -> None:
    paper = parse_feed(fixture("search_legacy_2016.xml")).papers[0]

    assert paper.url == "https://arxiv.org/abs/1203.5512v2"
    assert paper.pdf_url == "https://arxiv.org/pdf/1203.5512v2"


def test_legacy_metadata_after_the_authors_is_read() -> None:
    first, second = parse_feed(fixture("search_legacy_2016.xml")).papers

    assert first.doi == "10.1103/PhysRevB.86.094512"
    assert first.journal_ref == "Phys. Rev. B 86, 094512 (2012)"
    assert first.primary_category == "cond-mat.quant-gas"
    assert first.categories == ["cond-mat.quant-gas", "cond-mat.stat-mech"]
    assert (first.published_date, first.updated_date) == (date(2012, 3, 25), date(2012, 9, 17))
    assert (second.arxiv_id, second.version) == ("cond-mat/0511234", 1)
    assert second.title == "Ordering of Hard-Core Bosons on the Kagome Lattice at One-Third Filling"
    assert second.doi is None


def test_repeated_categories_are_listed_once_in_feed_order() -> None:
    # Given an entry that lists cs.CL a second time
    body = fixture("search_current.xml").replace(
        b'<category term="cs.IR" scheme="http://arxiv.org/schemas/atom"/>',
        b'<category term="cs.IR" scheme="http://arxiv.org/schemas/atom"/>\n'
        b'    <category term="cs.CL" scheme="http://arxiv.org/schemas/atom"/>',
        1,
    )

    assert parse_feed(body).papers[0].categories == ["cs.CL", "cs.LG", "cs.IR"]


def test_an_empty_result_is_an_empty_feed() -> None:
    feed = parse_feed(fixture("empty.xml"))

    assert (feed.total_results, feed.start_index, feed.papers) == (0, 0, [])


def test_entries_without_id_or_title_are_skipped() -> None:
    # Given a page whose first two entries lack an id and a title
    feed = parse_feed(fixture("incomplete_entries.xml"))

    # Then only the complete entry is returned, its pdf link built from its id
    assert [paper.arxiv_id for paper in feed.papers] == ["2402.05678"]
    assert feed.papers[0].pdf_url == "https://arxiv.org/pdf/2402.05678v3"
    assert feed.total_results == 57


def test_the_error_feed_raises_arxivs_message() -> None:
    with pytest.raises(PermanentUpstreamError) as raised:
        parse_feed(fixture("error_http400.xml"))

    assert raised.value.service == "arxiv"
    assert raised.value.message == "arXiv rejected the query: incorrect id format for 2501.xyz"


def test_arxiv_error_message_reads_only_error_feeds() -> None:
    assert arxiv_error_message(fixture("error_http400.xml")) == "incorrect id format for 2501.xyz"
    assert arxiv_error_message(fixture("search_current.xml")) is None
    assert arxiv_error_message(b"<html><body>Bad Request</body></html>") is None
    assert arxiv_error_message(b"Bad Request") is None


def test_a_paper_titled_error_is_still_a_paper() -> None:
    body = fixture("search_current.xml").replace(
        b"<title>A Note on Retrieval Under Budget Constraints</title>", b"<title>Error</title>"
    )

    assert parse_feed(body).papers[3].title == "Error"


def test_a_truncated_body_is_worth_a_retry() -> None:
    # Given a response cut off in the middle of an entry
    body = fixture("search_current.xml")
    truncated = body[: len(body) // 2]

    with pytest.raises(TransientUpstreamError, match="malformed feed"):
        parse_feed(truncated)


@pytest.mark.parametrize("body", [b"", b"Service Unavailable", b"\xff\xfe<feed"])
def test_a_body_that_is_not_xml_is_worth_a_retry(body: bytes) -> None:
    with pytest.raises(TransientUpstreamError, match="malformed feed"):
        parse_feed(body)


def test_a_well_formed_document_that_is_not_a_feed_is_permanent() -> None:
    # Given a proxy's XHTML error page
    body = b'<html xmlns="http://www.w3.org/1999/xhtml"><body><p>Gateway</p></body></html>'

    with pytest.raises(PermanentUpstreamError, match="not an Atom feed"):
        parse_feed(body)


def test_an_entity_bomb_is_refused_quickly_and_cheaply() -> None:
    # Given a "billion laughs" body, which would expand to ~3 GB if entities were honoured
    body = fixture("billion_laughs.xml")

    # When it is parsed
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(PermanentUpstreamError, match="refused"):
        parse_feed(body)
    elapsed = time.perf_counter() - started
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Then it is refused at once, having allocated next to nothing
    assert elapsed < 0.5
    assert peak_bytes < 5_000_000


def test_an_external_entity_is_refused() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>&secret;</title></feed>'
    )

    with pytest.raises(PermanentUpstreamError, match="refused"):
        parse_feed(body)


def test_a_large_page_parses_in_linear_time() -> None:
    # Given a 2000-entry page (arXiv's largest), ~4 MB, built from a real-format entry
    body = fixture("search_current.xml").decode()
    head, _, rest = body.partition("  <entry>")
    entry = "  <entry>" + rest.split("  </entry>")[0] + "  </entry>\n"
    entries = "".join(entry.replace("2501.04321v2", f"2501.{index:05d}v1") for index in range(2000))
    page = (head + entries + "</feed>\n").encode()

    started = time.perf_counter()
    feed = parse_feed(page)
    elapsed = time.perf_counter() - started

    assert len(feed.papers) == 2000
    assert feed.papers[1999].arxiv_id == "2501.01999"
    # Tens of milliseconds in practice; quadratic work would take far longer.
    assert elapsed < 3.0


@pytest.mark.parametrize(
    ("entry_id", "expected"),
    [
        ("http://arxiv.org/abs/hep-ex/0406020v1", ("hep-ex/0406020", 1)),
        ("https://arxiv.org/abs/2502.13957v12", ("2502.13957", 12)),
        ("http://arxiv.org/abs/1111.2011v2", ("1111.2011", 2)),
        ("http://arxiv.org/abs/math.GT/0309136v1", ("math.GT/0309136", 1)),
        ("2502.13957", ("2502.13957", 1)),
        ("cond-mat/0511234", ("cond-mat/0511234", 1)),
    ],
)
def test_split_versioned_id(entry_id: str, expected: tuple[str, int]) -> None:
    assert split_versioned_id(entry_id) == expected


@pytest.mark.parametrize(
    "entry_id",
    ["https://arxiv.org/api/errors#incorrect_id_format_for_abc", "abc", "2502.13957v", ""],
)
def test_split_versioned_id_refuses_what_is_not_an_arxiv_id(entry_id: str) -> None:
    with pytest.raises(ValueError, match="not an arXiv id"):
        split_versioned_id(entry_id)
