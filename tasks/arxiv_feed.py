"""Parse an arXiv API response (an Atom feed) into `Paper` models.

Both formats arXiv has served are read: the current one (2025+: https links,
one-line summaries, `primary_category` without `scheme`) and the legacy one
(http links, `rel="self"`, namespaces declared on each element, titles and
summaries wrapped with a newline and spaces). The body is untrusted: defusedxml
refuses DTDs and entity declarations outright, so an entity-expansion bomb
costs nothing.

Errors, from the point of view of retrying:

- not well-formed XML (usually a body cut short): TransientUpstreamError;
- arXiv's error feed, a refused DTD or entity, a document that is not an Atom
  feed: PermanentUpstreamError, since asking again gets the same answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from schemas.research import Paper
from tasks.errors import PermanentUpstreamError, TransientUpstreamError

_ATOM: Final = "{http://www.w3.org/2005/Atom}"
_ARXIV: Final = "{http://arxiv.org/schemas/atom}"
_OPENSEARCH: Final = "{http://a9.com/-/spec/opensearch/1.1/}"

_ERROR_ID_PREFIXES: Final = ("https://arxiv.org/api/errors", "http://arxiv.org/api/errors")

# "http://arxiv.org/abs/2502.13957v2", "hep-ex/0406020v1", "math.GT/0309136":
# an optional abs URL, the id (new style or archive/number), an optional version.
_VERSIONED_ID: Final = re.compile(
    r"^(?:https?://(?:export\.)?arxiv\.org/abs/)?"
    r"(?P<id>\d{4}\.\d{4,5}|[a-z][a-z-]*(?:\.[A-Za-z-]+)?/\d{7})"
    r"(?:v(?P<version>\d+))?$"
)


@dataclass(frozen=True)
class ArxivFeed:
    """One page of arXiv results."""

    total_results: int  # opensearch:totalResults: matches for the whole query, not this page
    start_index: int  # opensearch:startIndex: offset of this page's first entry
    papers: list[Paper]  # summary fields left at their defaults


def parse_feed(body: bytes) -> ArxivFeed:
    """Parse an arXiv API response body.

    Args:
        body: the raw bytes of the response, as received (XML declares its encoding).

    Returns:
        The feed's totals and its papers, in feed order. An entry without an id
        or a title, or otherwise unusable, is left out.

    Raises:
        PermanentUpstreamError: arXiv's error feed (with arXiv's message), a DTD or
            entity declaration (refused), or a document that is not an Atom feed.
        TransientUpstreamError: the body is not well-formed XML, e.g. truncated.
    """
    root = _parse_xml(body)
    if root.tag != f"{_ATOM}feed":
        raise PermanentUpstreamError("arxiv", f"not an Atom feed: root element is {root.tag!r}")
    error = _error_message(root)
    if error is not None:
        raise PermanentUpstreamError("arxiv", f"arXiv rejected the query: {error}")

    entries = root.findall(f"{_ATOM}entry")
    papers = [paper for paper in map(_paper_from_entry, entries) if paper is not None]
    return ArxivFeed(
        total_results=_opensearch_int(root, "totalResults", default=len(entries)),
        start_index=_opensearch_int(root, "startIndex", default=0),
        papers=papers,
    )


def arxiv_error_message(body: bytes) -> str | None:
    """arXiv's message if `body` is its error feed (as sent with HTTP 400), else None.

    Never raises: a body that is not an error feed, or not XML at all, gives None.
    """
    try:
        root = _parse_xml(body)
    except (PermanentUpstreamError, TransientUpstreamError):
        return None
    return _error_message(root)


def split_versioned_id(entry_id: str) -> tuple[str, int]:
    """Split an arXiv id or abs URL into the id without version and the version.

    "http://arxiv.org/abs/hep-ex/0406020v1" gives ("hep-ex/0406020", 1); an id
    without a version ("2502.13957") is version 1.

    Raises:
        ValueError: `entry_id` is not an arXiv id.
    """
    match = _VERSIONED_ID.match(entry_id.strip())
    if match is None:
        raise ValueError(f"{entry_id!r} is not an arXiv id")
    return match["id"], int(match["version"] or 1)


def _parse_xml(body: bytes) -> Element:
    try:
        # forbid_dtd: arXiv never sends a DTD, so any DTD is refused before its
        # entities (the "billion laughs" kind) can be declared, let alone expanded.
        return SafeElementTree.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise PermanentUpstreamError(
            "arxiv", f"refused a feed with a DTD or entity declaration ({type(exc).__name__})"
        ) from exc
    except SafeElementTree.ParseError as exc:
        raise TransientUpstreamError("arxiv", f"malformed feed: {exc}") from exc


def _error_message(root: Element) -> str | None:
    for entry in root.iterfind(f"{_ATOM}entry"):
        entry_id = _text(entry.find(f"{_ATOM}id"))
        title = _text(entry.find(f"{_ATOM}title"))
        # A paper may be titled "Error" too: only an entry that is not a paper counts.
        if entry_id.startswith(_ERROR_ID_PREFIXES) or (
            title == "Error" and not _VERSIONED_ID.match(entry_id)
        ):
            return _text(entry.find(f"{_ATOM}summary")) or title
    return None


def _paper_from_entry(entry: Element) -> Paper | None:
    """One entry as a Paper, or None if it lacks what a Paper needs."""
    # One pass over the entry's children: the feeds put them in different orders.
    entry_id = title = abstract = published = updated = ""
    pdf_url = primary_category = doi = journal_ref = None
    authors: list[str] = []
    categories: dict[str, None] = {}  # an ordered set
    for child in entry:
        tag = child.tag
        if tag == f"{_ATOM}id":
            entry_id = _text(child)
        elif tag == f"{_ATOM}title":
            title = _text(child)
        elif tag == f"{_ATOM}summary":
            abstract = _text(child)
        elif tag == f"{_ATOM}published":
            published = _text(child)
        elif tag == f"{_ATOM}updated":
            updated = _text(child)
        elif tag == f"{_ATOM}author":
            name = _text(child.find(f"{_ATOM}name"))
            if name:
                authors.append(name)
        elif tag == f"{_ATOM}category":
            term = child.get("term", "").strip()
            if term:
                categories[term] = None
        elif tag == f"{_ATOM}link" and child.get("title") == "pdf" and child.get("href"):
            pdf_url = _https(child.get("href", "").strip())
        elif tag == f"{_ARXIV}primary_category":
            primary_category = child.get("term", "").strip() or None
        elif tag == f"{_ARXIV}doi":
            doi = _text(child) or None
        elif tag == f"{_ARXIV}journal_ref":
            journal_ref = _text(child) or None

    if not entry_id or not title:
        return None
    try:
        arxiv_id, version = split_versioned_id(entry_id)
        published_date = _date(published)
        return Paper(
            arxiv_id=arxiv_id,
            version=version,
            title=title,
            authors=authors,
            abstract=abstract,
            url=f"https://arxiv.org/abs/{arxiv_id}v{version}",
            pdf_url=pdf_url or f"https://arxiv.org/pdf/{arxiv_id}v{version}",
            published_date=published_date,
            updated_date=_date(updated) if updated else published_date,
            categories=list(categories),
            primary_category=primary_category,
            doi=doi,
            journal_ref=journal_ref,
        )
    except ValueError:  # a bad id or date; pydantic's ValidationError is a ValueError too
        return None


def _text(element: Element | None) -> str:
    """The element's text with runs of whitespace (the legacy feed's line wraps) as one space."""
    if element is None or element.text is None:
        return ""
    return " ".join(element.text.split())


def _opensearch_int(root: Element, name: str, default: int) -> int:
    text = _text(root.find(f"{_OPENSEARCH}{name}"))
    if not text:
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise PermanentUpstreamError(
            "arxiv", f"opensearch:{name} is not a number: {text!r}"
        ) from exc


def _date(timestamp: str) -> date:
    # "2004-06-07T11:08:22Z": the calendar date in the feed's own zone (arXiv uses UTC).
    return datetime.fromisoformat(timestamp).date()


def _https(url: str) -> str:
    # The legacy feed links over http; arxiv.org redirects those to https anyway.
    return "https://" + url.removeprefix("http://") if url.startswith("http://") else url
