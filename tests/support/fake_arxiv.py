"""A local HTTP server speaking the arXiv Atom API over a synthetic corpus.

`GET /api/query` takes arXiv's parameters (search_query, id_list, start,
max_results, sortBy, sortOrder) and answers in the current (2025+) Atom
format, laid out as export.arxiv.org lays it out. Errors are HTTP 400 with
arXiv's error feed.

The search is honest but small. A search_query combines, with AND, OR, ANDNOT
and parentheses (juxtaposed terms are ANDed):

- text terms `all:`, `ti:`, `abs:`, `au:`, `co:`, `jr:`, `id:`, a word or a
  "quoted phrase", matched case-insensitively on whole words (`all:` covers
  title, abstract, authors, comment and journal reference; a bare term is `all:`);
- `cat:cs.LG`, an exact category (primary or cross-list);
- `submittedDate:[YYYYMMDDhhmm TO YYYYMMDDhhmm]` (or the quoted form
  `"... TO ..."`), the first version's date, bounds inclusive;
  `lastUpdatedDate:` likewise for the latest version.

Relevance is the number of text terms a paper matches (newest first on ties).
There is no stemming and no wildcard. max_results above 2000 is refused.

The default corpus is `arxiv_corpus.default_corpus()`: a few hundred invented
papers on five topics; pass your own `CorpusPaper`s to control the results.

Run it on its own with `python -m tests.support.fake_arxiv --port 0 --latency 0.2`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

from tests.support import (
    FakeHTTPServer,
    Fault,
    RecordedRequest,
    Reply,
    retry_after_header,
    serve_command_line,
)
from tests.support.arxiv_corpus import CorpusPaper, default_corpus

__all__ = ["CorpusPaper", "FakeArxivServer", "Fault", "QuerySyntaxError", "default_corpus"]

ATOM_CONTENT_TYPE = "application/atom+xml; charset=utf-8"
MAX_RESULTS_LIMIT = 2000


class QuerySyntaxError(ValueError):
    """A search_query or parameter the fake cannot read; served as HTTP 400 and an error feed."""


class FakeArxivServer(FakeHTTPServer):
    """The arXiv API on a loopback port, serving `corpus` (default: `default_corpus()`)."""

    supported_faults = frozenset(
        {"status", "hang", "reset", "truncated", "malformed", "entity_bomb", "error_feed"}
    )

    def __init__(
        self,
        corpus: Sequence[CorpusPaper] | None = None,
        latency_seconds: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(latency_seconds=latency_seconds, host=host, port=port)
        self.corpus: tuple[CorpusPaper, ...] = tuple(default_corpus() if corpus is None else corpus)
        self._index = tuple(_IndexedPaper.of(paper) for paper in self.corpus)

    @property
    def url(self) -> str:
        """The query endpoint, e.g. http://127.0.0.1:PORT/api/query (ARXIV_API_URL)."""
        return f"http://{self.host}:{self.port}/api/query"

    def respond(self, request: RecordedRequest, fault: Fault | None) -> Reply:
        if fault is not None:
            return _fault_reply(fault)
        if request.path.rstrip("/") != "/api/query":
            return Reply(404, b"Not Found\n", "text/plain; charset=utf-8")
        if request.method != "GET":
            return Reply(405, b"Method Not Allowed\n", "text/plain; charset=utf-8")
        try:
            return Reply(200, self.search(request.params).encode(), ATOM_CONTENT_TYPE)
        except QuerySyntaxError as exc:
            return Reply(400, error_feed(str(exc)).encode(), ATOM_CONTENT_TYPE)

    def search(self, params: dict[str, str]) -> str:
        """The Atom feed answering the query `params`; raises QuerySyntaxError."""
        search_query = params.get("search_query", "")
        id_list = params.get("id_list", "")
        start = _non_negative_int(params, "start", 0)
        max_results = _non_negative_int(params, "max_results", 10)
        if max_results > MAX_RESULTS_LIMIT:
            raise QuerySyntaxError(f"max_results must be less than or equal to {MAX_RESULTS_LIMIT}")
        sort_by = params.get("sortBy", "relevance")
        sort_order = params.get("sortOrder", "descending")
        if sort_by not in ("relevance", "lastUpdatedDate", "submittedDate"):
            raise QuerySyntaxError("sortBy must be relevance, lastUpdatedDate or submittedDate")
        if sort_order not in ("ascending", "descending"):
            raise QuerySyntaxError("sortOrder must be ascending or descending")
        if not search_query.strip() and not id_list:
            raise QuerySyntaxError("search_query or id_list is required")

        query = parse_search_query(search_query) if search_query.strip() else None
        wanted_ids = _parse_id_list(id_list)
        hits: list[tuple[int, CorpusPaper]] = []
        for indexed in self._index:
            if wanted_ids and indexed.paper.arxiv_id not in wanted_ids:
                continue
            matched, score = _evaluate(query, indexed) if query else (True, 0)
            if matched:
                hits.append((score, indexed.paper))

        def sort_key(hit: tuple[int, CorpusPaper]) -> tuple[object, ...]:
            score, paper = hit
            if sort_by == "submittedDate":
                return (paper.published, paper.arxiv_id)
            if sort_by == "lastUpdatedDate":
                return (paper.last_updated, paper.arxiv_id)
            return (score, paper.published, paper.arxiv_id)

        hits.sort(key=sort_key, reverse=sort_order == "descending")
        page = [paper for _, paper in hits[start : start + max_results]]
        return render_feed(
            page,
            search_query=search_query,
            id_list=id_list,
            start=start,
            max_results=max_results,
            total_results=len(hits),
        )


# --- Atom rendering -----------------------------------------------------------

_FEED_OPEN = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    '<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"'
    ' xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">'
)


def render_feed(
    papers: Sequence[CorpusPaper],
    *,
    search_query: str,
    id_list: str,
    start: int,
    max_results: int,
    total_results: int,
) -> str:
    """A results feed as export.arxiv.org writes it: the same elements in the same order."""
    title = (
        f"arXiv Query: search_query={search_query}&id_list={id_list}"
        f"&start={start}&max_results={max_results}"
    )
    link = (
        f"https://arxiv.org/api/query?search_query={quote_plus(search_query, safe=':')}"
        f"&start={start}&max_results={max_results}&id_list={id_list}"
    )
    # arXiv's feed id is an opaque 27-character token; a hash of the query is one.
    token = base64.b64encode(hashlib.sha1(title.encode()).digest()).decode().rstrip("=")
    lines = [
        _FEED_OPEN,
        f"  <id>https://arxiv.org/api/{token}</id>",
        f"  <title>{escape(title)}</title>",
        f"  <updated>{_timestamp(datetime.now(UTC))}</updated>",
        f'  <link href="{_attribute(link)}" type="application/atom+xml"/>',
        f"  <opensearch:itemsPerPage>{max_results}</opensearch:itemsPerPage>",
        f"  <opensearch:totalResults>{total_results}</opensearch:totalResults>",
        f"  <opensearch:startIndex>{start}</opensearch:startIndex>",
    ]
    for paper in papers:
        lines.extend(_entry_lines(paper))
    lines.append("</feed>\n")
    return "\n".join(lines)


def _entry_lines(paper: CorpusPaper) -> list[str]:
    abs_url = f"https://arxiv.org/abs/{paper.versioned_id}"
    pdf_url = f"https://arxiv.org/pdf/{paper.versioned_id}"
    lines = [
        "  <entry>",
        f"    <id>http://arxiv.org/abs/{paper.versioned_id}</id>",
        f"    <title>{escape(paper.title)}</title>",
        f"    <updated>{_timestamp(paper.last_updated)}</updated>",
        f'    <link href="{abs_url}" rel="alternate" type="text/html"/>',
        f'    <link href="{pdf_url}" rel="related" type="application/pdf" title="pdf"/>',
        f"    <summary>{escape(paper.abstract)}</summary>",
    ]
    lines += [
        f'    <category term="{_attribute(c)}" scheme="http://arxiv.org/schemas/atom"/>'
        for c in paper.categories
    ]
    lines.append(f"    <published>{_timestamp(paper.published)}</published>")
    if paper.comment:
        lines.append(f"    <arxiv:comment>{escape(paper.comment)}</arxiv:comment>")
    lines.append(f'    <arxiv:primary_category term="{_attribute(paper.categories[0])}"/>')
    if paper.journal_ref:
        lines.append(f"    <arxiv:journal_ref>{escape(paper.journal_ref)}</arxiv:journal_ref>")
    for author in paper.authors:
        lines += ["    <author>", f"      <name>{escape(author)}</name>", "    </author>"]
    if paper.doi:
        doi = _attribute(paper.doi)
        lines.append(f"    <arxiv:doi>{doi}</arxiv:doi>")
        lines.append(f'    <link rel="related" href="https://doi.org/{doi}" title="doi"/>')
    lines.append("  </entry>")
    return lines


def error_feed(message: str) -> str:
    """arXiv's HTTP 400 body: a feed holding one entry titled Error that carries `message`."""
    anchor = "https://arxiv.org/api/errors#" + re.sub(r"\W+", "_", message).strip("_")
    now = _timestamp(datetime.now(UTC))
    return "\n".join(
        [
            _FEED_OPEN,
            "  <id>https://arxiv.org/</id>",
            "  <title>arXiv Search Results</title>",
            f"  <updated>{now}</updated>",
            "  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>",
            "  <opensearch:totalResults>1</opensearch:totalResults>",
            "  <opensearch:startIndex>0</opensearch:startIndex>",
            "  <entry>",
            f"    <id>{escape(anchor)}</id>",
            "    <title>Error</title>",
            f"    <updated>{now}</updated>",
            f'    <link href="{_attribute(anchor)}" rel="alternate" type="text/html"/>',
            f"    <summary>{escape(message)}</summary>",
            "    <author>",
            "      <name>arXiv api core</name>",
            "    </author>",
            "  </entry>",
            "</feed>\n",
        ]
    )


# Ten nested levels of ten references: a billion "lol"s if a parser expands them.
_ENTITY_BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE feed [\n  <!ENTITY lol "lol">\n'
    + "".join(
        f'  <!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">\n'
        for n in range(1, 10)
    )
    + ']>\n<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol9;</title></feed>\n'
)

# What a proxy in front of the API sends when it breaks: HTML, not even well-formed.
_MALFORMED_BODY = (
    "<html><head><title>502 Bad Gateway</title></head><body>"
    "<h1>Bad Gateway</h1><p>The proxy server received an invalid response<br></body></html>\n"
)


def _fault_reply(fault: Fault) -> Reply:
    if fault.kind == "malformed":
        return Reply(200, _MALFORMED_BODY.encode(), ATOM_CONTENT_TYPE)
    if fault.kind == "entity_bomb":
        return Reply(200, _ENTITY_BOMB.encode(), ATOM_CONTENT_TYPE)
    if fault.kind == "error_feed":
        return Reply(fault.status_code, error_feed(fault.text).encode(), ATOM_CONTENT_TYPE)
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = retry_after_header(fault.retry_after)
    body = f"Error {fault.status_code}\n".encode()
    return Reply(fault.status_code, body, "text/plain; charset=utf-8", headers)


def _attribute(value: str) -> str:
    """`value` escaped for a double-quoted XML attribute."""
    return escape(value, {'"': "&quot;"})


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- search_query ---------------------------------------------------------------


@dataclass(frozen=True)
class _TextTerm:
    field: str
    phrase: str
    """Normalised words separated by single spaces (see `_normalise`)."""


@dataclass(frozen=True)
class _CategoryTerm:
    category: str


@dataclass(frozen=True)
class _DateTerm:
    field: str
    start: datetime
    end: datetime
    """Exclusive: the end of the last minute (or day) the query names."""


@dataclass(frozen=True)
class _Operation:
    operator: str
    left: _Node
    right: _Node


_Node = _TextTerm | _CategoryTerm | _DateTerm | _Operation

_TEXT_FIELDS = frozenset({"all", "ti", "abs", "au", "co", "jr", "id"})
_DATE_FIELDS = frozenset({"submittedDate", "lastUpdatedDate"})
_OPERATORS = frozenset({"AND", "OR", "ANDNOT"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<paren>[()])
      | (?P<field>[A-Za-z]+):(?:"(?P<quoted>[^"]*)"|\[(?P<range>[^\]]*)\]|(?P<bare>[^\s()"\[\]]+))
      | "(?P<phrase>[^"]*)"
      | (?P<word>[^\s()"\[\]:]+)
    )""",
    re.VERBOSE,
)


def parse_search_query(text: str) -> _Node:
    """Parse arXiv's search_query syntax (see the module docstring); raises QuerySyntaxError."""
    tokens: list[str | _Node] = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None:
            raise QuerySyntaxError(f"cannot parse search_query at {text[position:].strip()!r}")
        position = match.end()
        if match["paren"]:
            tokens.append(match["paren"])
        elif match["field"]:
            value = next(match[g] for g in ("quoted", "range", "bare") if match[g] is not None)
            tokens.append(_field_term(match["field"], value))
        elif match["phrase"] is not None:
            tokens.append(_field_term("all", match["phrase"]))
        elif match["word"] in _OPERATORS:
            tokens.append(match["word"])
        else:
            tokens.append(_field_term("all", match["word"]))
    if not tokens:
        raise QuerySyntaxError("empty search_query")
    return _Parser(tokens).parse()


class _Parser:
    """Recursive descent: OR binds loosest, then AND / ANDNOT; parentheses group."""

    def __init__(self, tokens: list[str | _Node]) -> None:
        self._tokens = tokens
        self._position = 0

    def parse(self) -> _Node:
        node = self._or()
        if self._position < len(self._tokens):
            raise QuerySyntaxError(f"unexpected {self._tokens[self._position]!r} in search_query")
        return node

    def _peek(self) -> str | _Node | None:
        return self._tokens[self._position] if self._position < len(self._tokens) else None

    def _or(self) -> _Node:
        node = self._and()
        while self._peek() == "OR":
            self._position += 1
            node = _Operation("OR", node, self._and())
        return node

    def _and(self) -> _Node:
        node = self._operand()
        while True:
            token = self._peek()
            if token in ("AND", "ANDNOT"):
                self._position += 1
                node = _Operation(str(token), node, self._operand())
            elif token is not None and token not in ("OR", ")"):
                node = _Operation("AND", node, self._operand())  # juxtaposition
            else:
                return node

    def _operand(self) -> _Node:
        token = self._peek()
        self._position += 1
        if token == "(":
            node = self._or()
            if self._peek() != ")":
                raise QuerySyntaxError("unbalanced parentheses in search_query")
            self._position += 1
            return node
        if token is None or isinstance(token, str):
            found = repr(token) if token else "the end of the query"
            raise QuerySyntaxError(f"expected a search term, found {found}")
        return token


def _field_term(field: str, value: str) -> _Node:
    if field == "cat":
        if not value.strip():
            raise QuerySyntaxError("empty category in search_query")
        return _CategoryTerm(value.strip().lower())
    if field in _DATE_FIELDS:
        return _date_term(field, value)
    if field not in _TEXT_FIELDS:
        raise QuerySyntaxError(f"unknown field {field!r} in search_query")
    phrase = _normalise(value)
    if not phrase:
        raise QuerySyntaxError(f"empty search term for {field}:")
    return _TextTerm(field, phrase)


def _date_term(field: str, value: str) -> _DateTerm:
    parts = re.fullmatch(r"\s*(\d+)\s+TO\s+(\d+)\s*", value)
    if parts is None:
        raise QuerySyntaxError(f"{field} needs a range [YYYYMMDDhhmm TO YYYYMMDDhhmm]")
    start, _ = _date_bound(parts[1])
    end, precision = _date_bound(parts[2])
    return _DateTerm(field, start, end + precision)


def _date_bound(digits: str) -> tuple[datetime, timedelta]:
    """A date of 8, 12 or 14 digits, and the span its last digit stands for."""
    layouts = {8: ("%Y%m%d", timedelta(days=1)), 12: ("%Y%m%d%H%M", timedelta(minutes=1))}
    layouts[14] = ("%Y%m%d%H%M%S", timedelta(seconds=1))
    if len(digits) not in layouts:
        raise QuerySyntaxError(f"bad date {digits!r}: use YYYYMMDDhhmm")
    layout, precision = layouts[len(digits)]
    try:
        return datetime.strptime(digits, layout).replace(tzinfo=UTC), precision
    except ValueError as exc:
        raise QuerySyntaxError(f"bad date {digits!r}: {exc}") from exc


def _normalise(text: str) -> str:
    # Words are letters and digits only, so "retrieval-augmented" matches
    # "retrieval augmented" and au:del_maestro matches "Del Maestro".
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


def _non_negative_int(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit():
        raise QuerySyntaxError(f"{name} must be a non-negative integer")
    return int(raw)


_NEW_ID = re.compile(r"\d{4}\.\d{4,5}(v\d+)?")
_OLD_ID = re.compile(r"[a-z-]+(\.[A-Z]{2})?/\d{7}(v\d+)?")


def _parse_id_list(id_list: str) -> frozenset[str]:
    ids = set()
    for raw in filter(None, (part.strip() for part in id_list.split(","))):
        if not (_NEW_ID.fullmatch(raw) or _OLD_ID.fullmatch(raw)):
            raise QuerySyntaxError(f"incorrect id format for {raw}")
        ids.add(re.sub(r"v\d+$", "", raw))
    return frozenset(ids)


@dataclass(frozen=True)
class _IndexedPaper:
    """A paper with its searchable fields normalised once, padded with spaces."""

    paper: CorpusPaper
    fields: dict[str, str]
    categories: frozenset[str]

    @classmethod
    def of(cls, paper: CorpusPaper) -> _IndexedPaper:
        # "|" is not a word character, so a phrase never spans two authors or fields.
        fields = {
            "ti": _normalise(paper.title),
            "abs": _normalise(paper.abstract),
            "au": " | ".join(_normalise(author) for author in paper.authors),
            "co": _normalise(paper.comment or ""),
            "jr": _normalise(paper.journal_ref or ""),
            "id": _normalise(paper.arxiv_id),
        }
        fields["all"] = " | ".join(fields[key] for key in ("ti", "abs", "au", "co", "jr"))
        padded = {key: f" {value} " for key, value in fields.items()}
        return cls(paper, padded, frozenset(c.lower() for c in paper.categories))


def _evaluate(node: _Node, indexed: _IndexedPaper) -> tuple[bool, int]:
    """Whether the paper matches `node`, and how many of its text terms it matches."""
    if isinstance(node, _TextTerm):
        found = f" {node.phrase} " in indexed.fields[node.field]
        return found, int(found)
    if isinstance(node, _CategoryTerm):
        return node.category in indexed.categories, 0
    if isinstance(node, _DateTerm):
        paper = indexed.paper
        moment = paper.published if node.field == "submittedDate" else paper.last_updated
        return node.start <= moment < node.end, 0
    left, left_score = _evaluate(node.left, indexed)
    right, right_score = _evaluate(node.right, indexed)
    if node.operator == "OR":
        return left or right, left_score + right_score
    if node.operator == "ANDNOT":
        return left and not right, left_score
    return left and right, left_score + right_score


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the default corpus until SIGINT or SIGTERM, printing the query URL first."""
    serve_command_line(FakeArxivServer, "A local arXiv API over a synthetic corpus.", argv)


if __name__ == "__main__":
    main()
