"""Citations: APA 7 author names and references, and BibTeX entries, from arXiv metadata."""

from __future__ import annotations

from datetime import date

import pytest

from schemas.research import Paper
from tasks.citations import apa_author, apa_reference, bibtex_entry
from tests.unit.factories import make_paper

# The 34 authors of arXiv:1707.08567, as arXiv lists them.
AUTHORS_OF_1707_08567 = [
    "Kees A. Schouhamer Immink", "Stan Baggen", "Ferdaous Chaabane", "Yanling Chen",
    "Peter H. N. de With", "Hela Gassara", "Hamed Gharbi", "Adel Ghazel", "Khaled Grati",
    "Naira M. Grigoryan", "Ashot Harutyunyan", "Masayuki Imanishi", "Mitsugu Iwamoto",
    "Ken-ichi Iwata", "Hiroshi Kamabe", "Brian M. Kurkoski", "Shigeaki Kuzuoka",
    "Patrick Langenhuizen", "Jan Lewandowsky", "Akiko Manada", "Shigeki Miyake",
    "Hiroyoshi Morita", "Jun Muramatsu", "Safa Najjar", "Arnak V. Poghosyan", "Fatma Rouissi",
    "Yuta Sakai", "Ulrich Tamm", "Joost van der Putten", "Fons van der Sommen",
    "A. J. Han Vinck", "Tadashi Wadayama", "Dirk Wübben", "Hirosuke Yamamoto",
]  # fmt: skip


def checkerboard_paper(**overrides: object) -> Paper:
    fields: dict[str, object] = {
        "title": "Checkerboard order in vortex cores",
        "authors": ["Adrian Del Maestro"],
        "published_date": date(2016, 5, 26),
        "updated_date": date(2016, 9, 1),
        "categories": ["cond-mat.str-el", "cond-mat.supr-con"],
        "primary_category": "cond-mat.str-el",
    }
    return make_paper("1605.08386", **{**fields, **overrides})


# --- apa_author -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Adrian Del Maestro", "Del Maestro, A."),
        ("Jean-Pierre Serre", "Serre, J.-P."),
        ("Yann LeCun", "LeCun, Y."),
        ("Ludwig van Beethoven", "van Beethoven, L."),
        ("Joost van der Putten", "van der Putten, J."),
        ("Peter H. N. de With", "de With, P. H. N."),
        ("C.-P. Yuan", "Yuan, C.-P."),
        ("J.R.R. Tolkien", "Tolkien, J. R. R."),
        ("Martin Luther King Jr.", "King, M. L., Jr."),
        ("José Ángel García-López", "García-López, J. Á."),
        ("Dirk Wübben", "Wübben, D."),
        ("Søren Kierkegaard", "Kierkegaard, S."),
        ("Do Kim", "Kim, D."),
        ("Plato", "Plato"),
        ("张伟", "张伟"),
        ("ATLAS Collaboration", "ATLAS Collaboration"),
        ("  Yann \n  LeCun ", "LeCun, Y."),
    ],
)
def test_apa_author_inverts_names_and_keeps_particles_hyphens_and_unicode(
    name: str, expected: str
) -> None:
    assert apa_author(name) == expected


# --- apa_reference ----------------------------------------------------------------------


def test_apa_reference_for_one_author_cites_the_arxiv_doi() -> None:
    paper = checkerboard_paper()

    assert apa_reference(paper) == (
        "Del Maestro, A. (2016). Checkerboard order in vortex cores (arXiv:1605.08386)."
        " arXiv. https://doi.org/10.48550/arXiv.1605.08386"
    )


def test_apa_reference_joins_two_authors_with_an_ampersand() -> None:
    paper = checkerboard_paper(authors=["Adrian Del Maestro", "Jean-Pierre Serre"])

    assert apa_reference(paper).startswith("Del Maestro, A., & Serre, J.-P. (2016). ")


def test_apa_reference_lists_three_authors_with_a_serial_ampersand() -> None:
    paper = checkerboard_paper(authors=["Adrian Del Maestro", "Yann LeCun", "Jean-Pierre Serre"])

    assert apa_reference(paper).startswith("Del Maestro, A., LeCun, Y., & Serre, J.-P. (2016). ")


def test_apa_reference_lists_all_of_twenty_authors() -> None:
    paper = checkerboard_paper(authors=AUTHORS_OF_1707_08567[:20])

    reference = apa_reference(paper)

    assert reference.startswith("Immink, K. A. S., Baggen, S., ")
    assert ", Lewandowsky, J., & Manada, A. (2016). " in reference
    assert ". . ." not in reference


@pytest.mark.parametrize("count", [21, 34])
def test_apa_reference_shortens_21_or_more_authors_to_19_an_ellipsis_and_the_last(
    count: int,
) -> None:
    authors = AUTHORS_OF_1707_08567[:count]
    paper = checkerboard_paper(authors=authors)

    reference = apa_reference(paper)

    listed = reference.split(" (2016). ")[0]
    first_nineteen = ", ".join(apa_author(name) for name in authors[:19])
    assert listed == f"{first_nineteen}, . . . {apa_author(authors[-1])}"
    assert "&" not in listed


def test_apa_reference_ends_with_the_journal_doi_when_there_is_one() -> None:
    paper = checkerboard_paper(doi="10.1103/PhysRevB.94.064420")

    reference = apa_reference(paper)

    assert reference.endswith(" arXiv. https://doi.org/10.1103/PhysRevB.94.064420")
    assert "10.48550" not in reference


def test_apa_reference_accepts_a_doi_written_as_a_url() -> None:
    paper = checkerboard_paper(doi="https://doi.org/10.1103/PhysRevB.94.064420")

    assert apa_reference(paper).endswith(" https://doi.org/10.1103/PhysRevB.94.064420")


def test_apa_reference_for_an_old_style_id() -> None:
    paper = make_paper(
        "hep-th/9901001",
        title="Spacetime   and\n  strings",
        authors=["Edward Witten"],
        published_date=date(1999, 1, 2),
    )

    assert apa_reference(paper) == (
        "Witten, E. (1999). Spacetime and strings (arXiv:hep-th/9901001)."
        " arXiv. https://doi.org/10.48550/arXiv.hep-th/9901001"
    )


@pytest.mark.parametrize(
    ("title", "cited"),
    [
        ("Is attention all you need?", "Is attention all you need? (arXiv:1605.08386)."),
        ("Attention, at last!", "Attention, at last! (arXiv:1605.08386)."),
        ("A note on attention.", "A note on attention (arXiv:1605.08386)."),
    ],
)
def test_apa_reference_puts_one_period_after_the_id_whatever_ends_the_title(
    title: str, cited: str
) -> None:
    reference = apa_reference(checkerboard_paper(title=title))

    assert f"(2016). {cited} arXiv. " in reference


def test_apa_reference_keeps_latex_and_specials_in_titles_as_given() -> None:
    paper = checkerboard_paper(title="Ulrich bundles & 100% of $\\mathbb{F}_e$")

    assert "Ulrich bundles & 100% of $\\mathbb{F}_e$ (arXiv:1605.08386)." in apa_reference(paper)


def test_apa_reference_without_authors_starts_with_the_title() -> None:
    paper = checkerboard_paper(authors=[])

    assert apa_reference(paper).startswith(
        "Checkerboard order in vortex cores (arXiv:1605.08386). (2016). arXiv. "
    )


# --- bibtex_entry -----------------------------------------------------------------------


def test_bibtex_entry_has_arxiv_fields_and_a_readable_key() -> None:
    paper = checkerboard_paper(
        title="The checkerboard order in vortex cores",
        authors=["Adrian Del Maestro", "Jean-Pierre Serre"],
    )

    assert bibtex_entry(paper) == (
        "@misc{delmaestro2016checkerboard,\n"
        "  author        = {Del Maestro, Adrian and Serre, Jean-Pierre},\n"
        "  title         = {{The checkerboard order in vortex cores}},\n"
        "  year          = {2016},\n"
        "  eprint        = {1605.08386},\n"
        "  archivePrefix = {arXiv},\n"
        "  primaryClass  = {cond-mat.str-el},\n"
        "  url           = {https://arxiv.org/abs/1605.08386}\n"
        "}"
    )


def test_bibtex_entry_adds_doi_and_journal_reference_when_present() -> None:
    paper = checkerboard_paper(
        doi="10.1103/PhysRevB.94.064420", journal_ref="Phys. Rev. B 94, 064420 (2016)"
    )

    entry = bibtex_entry(paper)

    assert "  doi           = {10.1103/PhysRevB.94.064420},\n" in entry
    assert "  note          = {Phys. Rev. B 94, 064420 (2016)},\n" in entry


def test_bibtex_entry_writes_names_last_first_with_particles_suffixes_and_unicode() -> None:
    paper = checkerboard_paper(
        authors=[
            "Ludwig van Beethoven",
            "Martin Luther King Jr.",
            "Dirk Wübben",
            "ATLAS Collaboration",
            "Plato",
        ]
    )

    assert (
        "  author        = {van Beethoven, Ludwig and King, Jr., Martin Luther"
        " and Wübben, Dirk and {ATLAS Collaboration} and {Plato}},\n"
    ) in bibtex_entry(paper)


def test_bibtex_key_folds_the_surname_to_ascii_letters_and_skips_stopwords_and_math() -> None:
    paper = checkerboard_paper(
        authors=["Søren Kierkegaard-Müller"], title="On $k$-means: a faster algorithm"
    )

    assert bibtex_entry(paper).startswith("@misc{kierkegaardmuller2016means,\n")


def test_bibtex_entry_for_an_old_style_id() -> None:
    paper = make_paper(
        "hep-th/9901001",
        title="Spacetime and strings",
        authors=["Edward Witten"],
        published_date=date(1999, 1, 2),
        categories=["hep-th"],
        primary_category=None,
    )

    entry = bibtex_entry(paper)

    assert entry.startswith("@misc{witten1999spacetime,\n")
    assert "  eprint        = {hep-th/9901001},\n" in entry
    assert "  primaryClass  = {hep-th},\n" in entry
    assert "  url           = {https://arxiv.org/abs/hep-th/9901001}\n" in entry


def test_bibtex_escapes_specials_in_text_but_leaves_math_alone() -> None:
    paper = checkerboard_paper(
        title="Q&A at 100% on task_1 #2 with $\\omega_n^{(k)}$ and 5$",
        journal_ref="Proc. A&B 2016",
    )

    entry = bibtex_entry(paper)

    assert (
        "  title         = {{Q\\&A at 100\\% on task\\_1 \\#2 with $\\omega_n^{(k)}$ and 5\\$}},\n"
    ) in entry
    assert "  note          = {Proc. A\\&B 2016},\n" in entry


def test_bibtex_keeps_existing_escapes_and_latex_grouping() -> None:
    paper = checkerboard_paper(title='R\\&D on {BERT} for Schr\\"{o}dinger equations')

    assert '{{R\\&D on {BERT} for Schr\\"{o}dinger equations}}' in bibtex_entry(paper)


def test_bibtex_neutralises_unbalanced_braces_so_the_file_still_parses() -> None:
    paper = checkerboard_paper(title="Sets like {a, b and more")

    entry = bibtex_entry(paper)

    assert "{{Sets like \\textbraceleft{}a, b and more}}" in entry
    assert entry.count("{") == entry.count("}")
