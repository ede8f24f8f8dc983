"""Citations built from a paper's arXiv metadata: an APA 7 reference and a BibTeX entry.

Titles are used as arXiv gives them: they are often LaTeX (`$\\omega$`,
`Schr\\"odinger`), so no sentence-casing is attempted; whitespace is collapsed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Final

from nameparser import HumanName

from schemas.research import Paper
from tasks.text_terms import STOPWORDS, WORD

# arXiv registers a DataCite DOI for every paper, old-style ids included.
ARXIV_DOI_PREFIX: Final = "10.48550/arXiv."

# APA lists up to 20 authors; beyond that, the first 19, an ellipsis, the last.
_APA_MAX_LISTED: Final = 20

# Group authors ("ATLAS Collaboration", "The LIGO Scientific Collaboration") are
# written in full; they are no person's name to invert.
_GROUP_AUTHOR: Final = re.compile(r"\b(collaboration|consortium|team|group)\b", re.IGNORECASE)

# `$...$` and `$$...$$` spans in a title: LaTeX math, left alone when escaping.
_MATH: Final = re.compile(r"(?<!\\)(\$\$[^$]+\$\$|\$[^$]+\$)")
# Characters BibTeX or LaTeX would read as syntax, unless already escaped.
_BIBTEX_SPECIAL: Final = re.compile(r"(?<!\\)([&%#_$])")
_LATEX_COMMAND: Final = re.compile(r"\\[A-Za-z]+")
_BRACE_COMMANDS: Final = {"{": r"\textbraceleft{}", "}": r"\textbraceright{}"}

# Latin letters that Unicode decomposition does not reduce to ASCII.
# (Only lower-case forms: names are lower-cased before folding.)
_ASCII_LETTERS: Final = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "ł": "l", "đ": "d", "ð": "d", "þ": "th"}
)


# --- Names ----------------------------------------------------------------------------


class _Name:
    """One author's name split into family name, given names and suffix (Jr., III)."""

    def __init__(self, written: str) -> None:
        """`written` is the name as arXiv lists it, e.g. "Adrian Del Maestro"."""
        self.written = " ".join(unicodedata.normalize("NFC", written).split())
        parsed = HumanName(self.written)
        given = [parsed.first, *parsed.middle_list]
        # arXiv names carry no honorifics, so when nameparser reads the first
        # word as a title and leaves no given name ("Do Kim", "Bishop Smith"),
        # that word was the given name.
        if not parsed.first and parsed.title:
            given = [parsed.title, *parsed.middle_list]
        self.family: str = parsed.last
        self.given: list[str] = [name for name in given if name]
        self.suffix: str = parsed.suffix

    @property
    def is_person(self) -> bool:
        """False for single names ("Plato") and group authors, which are written as given."""
        return bool(self.family) and not _GROUP_AUTHOR.search(self.written)


@functools.lru_cache(maxsize=4096)
def _parse_name(written: str) -> _Name:
    """`_Name(written)`, remembered: nameparser is the slowest part of a citation,
    and every author is needed for both the APA reference and the BibTeX entry.
    A `_Name` is never changed after it is built, so sharing one is safe."""
    return _Name(written)


def _initials(given_name: str) -> str:
    """Initials of one given name, hyphens kept: "Jean-Pierre" → "J.-P.", "J.R.R." → "J. R. R."."""
    hyphenated_parts = []
    for part in given_name.split("-"):
        pieces = [piece for piece in part.split(".") if piece]
        letters = [next((ch for ch in piece if ch.isalnum()), "") for piece in pieces]
        hyphenated_parts.append(" ".join(f"{letter.upper()}." for letter in letters if letter))
    return "-".join(part for part in hyphenated_parts if part)


def apa_author(name: str) -> str:
    """One author as APA writes them: family name, comma, initials.

    Args:
        name: the name as arXiv lists it, given names first ("Yann LeCun").

    "Adrian Del Maestro" → "Del Maestro, A."; "Jean-Pierre Serre" →
    "Serre, J.-P."; "Ludwig van Beethoven" → "van Beethoven, L."; a suffix
    follows the initials ("King, M. L., Jr."). Single names and group authors
    ("ATLAS Collaboration") are kept as written; letters outside ASCII are kept.
    """
    parsed = _parse_name(name)
    if not parsed.is_person:
        return parsed.written
    initials = " ".join(_initials(given) for given in parsed.given)
    parts = [parsed.family, initials, parsed.suffix]
    return ", ".join(part for part in parts if part)


# --- APA 7 ----------------------------------------------------------------------------


def _apa_author_list(authors: list[str]) -> str:
    """Join APA-formatted authors: "A", "A, & B", "A, B, & C"; 21+ as "A1, …, A19, . . . Z"."""
    if len(authors) <= 1:
        return "".join(authors)
    if len(authors) > _APA_MAX_LISTED:
        return ", ".join(authors[: _APA_MAX_LISTED - 1]) + ", . . . " + authors[-1]
    return ", ".join(authors[:-1]) + ", & " + authors[-1]


def _clean_title(title: str) -> str:
    # One final period goes: the "(arXiv:ID)." that follows brings its own.
    title = " ".join(title.split())
    if title.endswith(".") and not title.endswith(".."):
        title = title[:-1]
    return title


def _journal_doi(paper: Paper) -> str | None:
    """The paper's journal DOI as a bare "10.xxxx/..." (arXiv metadata may hold a URL)."""
    if not paper.doi or not paper.doi.split():
        return None
    doi = paper.doi.split()[0]  # some records list several DOIs: the first one is cited
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix) :]
    return doi or None


def apa_reference(paper: Paper) -> str:
    """The paper's APA 7 reference as an arXiv preprint.

    `Del Maestro, A., & Serre, J.-P. (2016). Title (arXiv:1605.08386). arXiv.
    https://doi.org/10.48550/arXiv.1605.08386`, with the year of first
    submission. A paper with a journal DOI ends with that DOI instead. With no
    authors, the title takes the author's place.
    """
    authors = _apa_author_list([apa_author(name) for name in paper.authors if name.strip()])
    work = f"{_clean_title(paper.title)} (arXiv:{paper.arxiv_id})."
    year = f"({paper.published_date.year})."
    doi = _journal_doi(paper) or ARXIV_DOI_PREFIX + paper.arxiv_id
    head = f"{authors} {year} {work}" if authors else f"{work} {year}"
    return f"{head} arXiv. https://doi.org/{doi}"


# --- BibTeX ---------------------------------------------------------------------------


def _escape_bibtex(text: str) -> str:
    """Escape what BibTeX or LaTeX would misread, leaving `$...$` math and LaTeX commands.

    `&`, `%`, `#`, `_` and a lone `$` get a backslash unless they have one.
    Braces are LaTeX grouping and stay, unless they are unbalanced (which
    would break the whole .bib file): then each becomes a brace command.
    """
    pieces = _MATH.split(" ".join(text.split()))
    # re.split with one capturing group: odd positions hold the math spans.
    escaped = "".join(
        piece if position % 2 else _BIBTEX_SPECIAL.sub(r"\\\1", piece)
        for position, piece in enumerate(pieces)
    )
    if not _braces_balanced(escaped):
        escaped = re.sub(r"[{}]", lambda brace: _BRACE_COMMANDS[brace.group()], escaped)
    return escaped


def _braces_balanced(text: str) -> bool:
    # BibTeX counts every brace, escaped or not.
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _ascii_letters(text: str) -> str:
    """Lower-case ASCII letters only: "Müller" → "muller", "Del Maestro" → "delmaestro"."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_ASCII_LETTERS))
    return "".join(ch for ch in decomposed if "a" <= ch <= "z")


def _bibtex_key(paper: Paper, first_author: _Name | None) -> str:
    """First author's family name, year, first significant title word.

    For example "delmaestro2016checkerboard"; "anonymous" stands in for a
    missing author or a family name with no Latin letters.
    """
    if first_author is None:
        surname = ""
    else:
        surname = _ascii_letters(first_author.family or first_author.written)
    # Math spans and LaTeX commands make poor keys ("$k$-means" should give "means").
    plain_title = _LATEX_COMMAND.sub(" ", _MATH.sub(" ", paper.title))
    title_word = next(
        (
            folded
            for word in WORD.findall(plain_title)
            if word.casefold() not in STOPWORDS and (folded := _ascii_letters(word))
        ),
        "",
    )
    return f"{surname or 'anonymous'}{paper.published_date.year}{title_word}"


def _bibtex_name(name: _Name) -> str:
    """A name in BibTeX's "Last, First" (or "Last, Jr., First") form; groups braced whole."""
    if not name.is_person:
        # Braces stop BibTeX from splitting "ATLAS Collaboration" into first and last.
        return "{" + _escape_bibtex(name.written) + "}"
    parts = [name.family, name.suffix, " ".join(name.given)]
    return _escape_bibtex(", ".join(part for part in parts if part))


def bibtex_entry(paper: Paper) -> str:
    """The paper as a BibTeX `@misc` entry in arXiv's style (eprint, archivePrefix, primaryClass).

    The title is wrapped in a second pair of braces so that bibliography styles
    keep its capitalisation. `primaryClass` is the primary category, or the
    first listed one when the primary is unknown (arXiv lists it first). The
    journal reference, when there is one, goes into `note`.
    """
    names = [_parse_name(written) for written in paper.authors if written.strip()]
    primary_class = paper.primary_category or next(iter(paper.categories), None)
    fields: list[tuple[str, str | None]] = [
        ("author", " and ".join(_bibtex_name(name) for name in names) or None),
        ("title", "{" + _escape_bibtex(paper.title) + "}"),
        ("year", str(paper.published_date.year)),
        ("eprint", paper.arxiv_id),
        ("archivePrefix", "arXiv"),
        ("primaryClass", primary_class),
        ("doi", _journal_doi(paper)),
        ("note", _escape_bibtex(paper.journal_ref) if paper.journal_ref else None),
        ("url", f"https://arxiv.org/abs/{paper.arxiv_id}"),
    ]
    present = [(field, value) for field, value in fields if value]
    width = max(len(field) for field, _ in present)
    lines = [f"  {field.ljust(width)} = {{{value}}}" for field, value in present]
    key = _bibtex_key(paper, names[0] if names else None)
    return f"@misc{{{key},\n" + ",\n".join(lines) + "\n}"
