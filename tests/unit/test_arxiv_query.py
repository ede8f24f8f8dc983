"""Building arXiv's search_query from untrusted free text, categories and dates."""

# ruff: noqa: RUF001  # Greek letters, dotless i and curly quotes are the test data

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from tasks.arxiv_query import build_query_params, build_search_query
from tasks.query_planner import (
    MAX_PRECISE_TERMS,
    QUERY_SEPARATOR,
    SearchPlan,
    joined_queries,
    plan_search,
)

TODAY = date(2026, 3, 2)

# Anything outside a quoted phrase that is not one of our own clauses would mean
# the user's text escaped into the query's structure.
CLAUSE = "|".join(
    [
        r'all:"[^"\\:()\[\]{}*?^~+!]+"',
        r"cat:[a-z][a-z-]*(?:\.[A-Za-z-]+)?",
        r"submittedDate:\[\d{12} TO \d{12}\]",
    ]
)
STRUCTURE = re.compile(rf"^(?:\(|\)| OR | AND |{CLAUSE})+$")


def terms_of(search_query: str) -> list[str]:
    return re.findall(r'all:"([^"]*)"', search_query)


def test_words_are_quoted_phrases_or_ed_together() -> None:
    # When a user asks a plain question
    search_query = build_search_query("retrieval augmented generation for GPT-4 and BERT")

    # Then each content word is one phrase, OR-ed, with GPT-4 kept whole
    assert search_query == (
        '(all:"retrieval" OR all:"augmented" OR all:"generation" OR all:"GPT-4" OR all:"BERT")'
    )


def test_a_single_word_needs_no_parentheses() -> None:
    assert build_search_query("transformers") == 'all:"transformers"'


def test_version_numbers_and_hyphenated_words_survive() -> None:
    # Given words whose inner dots and hyphens carry meaning
    search_query = build_search_query("GPT-3.5 vs. LLaMA-2 on state-of-the-art tasks.")

    # Then they stay whole, while a trailing full stop goes
    assert terms_of(search_query) == ["GPT-3.5", "vs", "LLaMA-2", "state-of-the-art", "tasks"]


@pytest.mark.parametrize(
    "attack",
    [
        '") OR all:x',
        "cat:hep-th",
        "ti:foo AND",
        'au:"del maestro" ANDNOT ti:checkerboard',
        "(quantum OR classical) AND NOT cat:cs.CL",
        "submittedDate:[199101010000 TO 209912312359]",
        'graph*  neur?l  gauss~2  boost^4  +must  -not  !bang  \\escape  {range}  "quoted"',
        "“curly quotes” and ‘single’ and «guillemets»",
        "σ-models with $ω$ and Schrödinger’s équations",
        "&& || ; DROP TABLE papers; --",
    ],
)
def test_query_syntax_typed_by_the_user_never_reaches_arxiv(attack: str) -> None:
    # When the free text is written in arXiv's own query language
    search_query = build_search_query(attack, ["cs.CL"], date(2020, 1, 1), date(2021, 1, 1))

    # Then the result is still only our quoted terms, our category and our dates
    assert STRUCTURE.match(search_query), search_query
    assert search_query.endswith(" AND cat:cs.CL AND submittedDate:[202001010000 TO 202101012359]")


def test_field_prefixes_and_operators_become_plain_words() -> None:
    # Given field prefixes and operators a user copied from arXiv's documentation
    search_query = build_search_query('ti:foo AND au:"del maestro" ANDNOT cat:hep-th OR x')

    # Then the operators are dropped and the rest is searched as words
    assert terms_of(search_query) == ["ti", "foo", "au", "del", "maestro", "cat", "hep-th", "x"]


def test_unicode_words_are_kept_and_normalised() -> None:
    # Given "é" typed as e + combining accent, and Greek letters
    search_query = build_search_query("Schro\u0308dinger σ-models ω")

    # Then each word stays one term, in its composed form
    assert terms_of(search_query) == ["Schrödinger", "σ-models", "ω"]


def test_duplicates_are_dropped_regardless_of_case() -> None:
    search_query = build_search_query("BERT bert Bert fine-tuning Fine-Tuning")

    assert terms_of(search_query) == ["BERT", "fine-tuning"]


def test_a_stopword_only_query_falls_back_to_its_words() -> None:
    # When every word is a stopword
    search_query = build_search_query("to be or not to be")

    # Then the words themselves are searched (operators still left out), once each
    assert search_query == '(all:"to" OR all:"be")'


def test_a_query_of_operators_only_is_still_searchable_and_safe() -> None:
    assert build_search_query("AND or ANDNOT") == '(all:"AND" OR all:"or" OR all:"ANDNOT")'


def test_a_500_character_query_keeps_its_first_12_terms() -> None:
    # Given a 500-character query of distinct words
    words = [f"term{i:03d}" for i in range(100)]
    query = " ".join(words)[:500]

    # Then only the first twelve are sent
    assert terms_of(build_search_query(query)) == words[:12]


def test_a_query_without_letters_or_digits_is_refused() -> None:
    with pytest.raises(ValueError, match="no letter or digit"):
        build_search_query('"()" :: ** ??')


def test_one_category_is_and_ed() -> None:
    assert build_search_query("parsing", ["cs.CL"]) == 'all:"parsing" AND cat:cs.CL'


def test_several_categories_match_any_of_them() -> None:
    search_query = build_search_query("parsing", ["cs.CL", "cs.LG", "hep-th", "cs.CL"])

    assert search_query == 'all:"parsing" AND (cat:cs.CL OR cat:cs.LG OR cat:hep-th)'


@pytest.mark.parametrize("category", ["cs.CL OR all:x", "cs.CL)", 'cs"CL', "CS.CL", ""])
def test_a_category_that_is_not_one_is_refused(category: str) -> None:
    with pytest.raises(ValueError, match="not an arXiv category"):
        build_search_query("parsing", [category])


def test_a_closed_date_range_covers_both_whole_days() -> None:
    search_query = build_search_query(
        "parsing", start_date=date(2023, 4, 12), end_date=date(2023, 4, 13)
    )

    assert search_query == 'all:"parsing" AND submittedDate:[202304120000 TO 202304132359]'


def test_an_open_start_begins_with_arxiv_itself() -> None:
    search_query = build_search_query("parsing", end_date=date(2000, 12, 31), today=TODAY)

    assert search_query.endswith("submittedDate:[199101010000 TO 200012312359]")


def test_an_open_end_runs_until_today() -> None:
    search_query = build_search_query("parsing", start_date=date(2024, 2, 29), today=TODAY)

    assert search_query.endswith("submittedDate:[202402290000 TO 202603022359]")


def test_no_dates_means_no_date_clause() -> None:
    assert "submittedDate" not in build_search_query("parsing", today=TODAY)


def test_a_start_after_the_end_is_refused() -> None:
    with pytest.raises(ValueError, match="after end date"):
        build_search_query("parsing", start_date=date(2024, 1, 2), end_date=date(2024, 1, 1))


def test_categories_and_dates_combine_with_and() -> None:
    search_query = build_search_query(
        "speech recognition", ["eess.AS", "cs.SD"], date(2022, 1, 1), None, today=TODAY
    )

    assert search_query == (
        '(all:"speech" OR all:"recognition") AND (cat:eess.AS OR cat:cs.SD)'
        " AND submittedDate:[202201010000 TO 202603022359]"
    )


def test_query_params_ask_for_relevance_order() -> None:
    assert build_query_params('all:"parsing"', 15) == {
        "search_query": 'all:"parsing"',
        "start": "0",
        "max_results": "15",
        "sortBy": "relevance",
        "sortOrder": "descending",
    }


def test_query_params_carry_the_page_offset() -> None:
    assert build_query_params('all:"parsing"', 10, start=20)["start"] == "20"


@pytest.mark.parametrize(("max_results", "start"), [(0, 0), (2001, 0), (10, -1)])
def test_query_params_out_of_arxiv_range_are_refused(max_results: int, start: int) -> None:
    with pytest.raises(ValueError):
        build_query_params('all:"parsing"', max_results, start)


# --- the query planner: a precise query first, a broad one when it finds too few --------


def plan(query: str, *categories: str, **kwargs: Any) -> SearchPlan:
    return plan_search(query, categories, pool_size=kwargs.pop("pool_size", 15), **kwargs)


def test_the_precise_query_ands_the_content_words_and_the_broad_one_ors_the_specific_ones() -> None:
    # When a request mixes specific words with generic ones
    search_plan = plan("retrieval augmented generation for medical question answering")

    # Then the precise query needs every content word, the broad one any specific word
    assert search_plan.precise == (
        'all:"retrieval" AND all:"augmented" AND all:"generation"'
        ' AND all:"medical" AND all:"question" AND all:"answering"'
    )
    assert search_plan.broad == (
        '(all:"retrieval" OR all:"augmented" OR all:"medical" OR all:"question" OR all:"answering")'
    )


def test_a_double_quoted_span_is_a_phrase_relaxed_to_its_specific_words_in_the_broad_query() -> (
    None
):
    search_plan = plan('"graph neural networks" for molecules')

    # Then the precise query needs the phrase; the broad one takes it, or its specific word
    assert search_plan.precise == 'all:"graph neural networks" AND all:"molecules"'
    assert search_plan.broad == '(all:"graph neural networks" OR all:"graph" OR all:"molecules")'


def test_typographic_quotes_make_phrases_and_an_unmatched_quote_is_ignored() -> None:
    assert terms_of(plan("“contrastive learning” of «sentence embeddings»").precise) == [
        "contrastive learning",
        "sentence embeddings",
    ]
    assert terms_of(plan('speech "recognition errors').precise) == [
        "speech",
        "recognition",
        "errors",
    ]


def test_a_quoted_single_word_is_a_word_and_stopwords_beside_a_phrase_are_dropped() -> None:
    assert plan('"transformers"').precise == 'all:"transformers"'
    assert plan('"question answering" in the').precise == 'all:"question answering"'


def test_a_phrase_keeps_its_stopwords_and_cannot_carry_syntax() -> None:
    # Given a quoted span holding a stopword and arXiv syntax
    search_plan = plan('"question answering over tables" ti:x) OR cat:hep-th', "cs.CL")

    # Then the phrase is its words only, and the rest is plain words
    assert terms_of(search_plan.precise) == [
        "question answering over tables",
        "ti",
        "x",
        "cat",
        "hep-th",
    ]
    assert STRUCTURE.match(search_plan.precise), search_plan.precise
    assert search_plan.broad is not None and STRUCTURE.match(search_plan.broad)


def test_hyphenated_words_stay_whole_and_are_generic_only_when_every_part_is() -> None:
    search_plan = plan("LLM-based state-of-the-art text-to-SQL")

    assert terms_of(search_plan.precise) == ["LLM-based", "state-of-the-art", "text-to-SQL"]
    assert search_plan.broad == 'all:"text-to-SQL"'


def test_one_content_word_needs_no_second_query() -> None:
    # When the request has a single content word
    search_plan = plan("what about transformers?", "cs.CL")

    # Then the broad query would be the precise one again: there is none
    assert search_plan.precise == 'all:"transformers" AND cat:cs.CL'
    assert search_plan.broad is None
    assert not search_plan.needs_broad(0)


def test_a_query_of_generic_words_only_ors_them_all_in_the_broad_query() -> None:
    search_plan = plan("deep learning models")

    assert search_plan.precise == 'all:"deep" AND all:"learning" AND all:"models"'
    assert search_plan.broad == '(all:"deep" OR all:"learning" OR all:"models")'


def test_a_stopword_only_query_searches_its_words() -> None:
    search_plan = plan("to be or not to be")

    assert search_plan.precise == 'all:"to" AND all:"be"'
    assert search_plan.broad == '(all:"to" OR all:"be")'


def test_non_ascii_words_are_kept_whole_and_composed() -> None:
    search_plan = plan("Schro\u0308dinger σ-models and équations")

    assert terms_of(search_plan.precise) == ["Schrödinger", "σ-models", "équations"]


def test_a_long_query_ands_at_most_six_terms_preferring_phrases_and_specific_words() -> None:
    # Given a paragraph-long request with a phrase at its end
    words = " ".join(f"term{i:02d}" for i in range(30))
    search_plan = plan(f'novel deep models {words} "sparse attention"')

    # Then the precise query keeps the phrase and the first specific words, in query order
    specific = [f"term{i:02d}" for i in range(MAX_PRECISE_TERMS - 1)]
    assert terms_of(search_plan.precise) == [*specific, "sparse attention"]
    # And the broad one twelve specific terms, the phrase among them
    assert terms_of(search_plan.broad or "") == [
        *(f"term{i:02d}" for i in range(11)),
        "sparse attention",
    ]


def test_both_queries_carry_the_categories_and_the_date_range() -> None:
    search_plan = plan(
        "speech recognition", "eess.AS", "cs.SD", start_date=date(2022, 1, 1), today=TODAY
    )

    filters = " AND (cat:eess.AS OR cat:cs.SD) AND submittedDate:[202201010000 TO 202603022359]"
    assert search_plan.precise == 'all:"speech" AND all:"recognition"' + filters
    assert search_plan.broad == '(all:"speech" OR all:"recognition")' + filters


@pytest.mark.parametrize(
    "attack",
    [
        '") OR all:x',
        '"cat:hep-th" AND "submittedDate:[199101010000 TO 209912312359]"',
        'graph*  neur?l  "gauss~2  boost^4"  +must  -not  !bang  \\escape  {range}',
        "“curly ” quotes„ and ‘single’ and «guillemets»",
        "&& || ; DROP TABLE papers; --",
    ],
)
def test_planned_queries_never_carry_the_users_syntax(attack: str) -> None:
    search_plan = plan(attack, "cs.CL", start_date=date(2020, 1, 1), end_date=date(2021, 1, 1))

    for search_query in filter(None, (search_plan.precise, search_plan.broad)):
        assert STRUCTURE.match(search_query), search_query
        assert search_query.endswith(
            " AND cat:cs.CL AND submittedDate:[202001010000 TO 202101012359]"
        )


def test_the_broad_query_is_needed_only_below_the_pool_size() -> None:
    search_plan = plan("graph neural networks for molecules", pool_size=15)

    assert search_plan.max_results == 15
    assert search_plan.needs_broad(14)
    assert not search_plan.needs_broad(15)


def test_a_plan_refuses_what_the_single_query_refused() -> None:
    with pytest.raises(ValueError, match="no letter or digit"):
        plan('"" :: **')
    with pytest.raises(ValueError, match="not an arXiv category"):
        plan("parsing", "cs.CL OR all:x")
    with pytest.raises(ValueError, match="after end date"):
        plan("parsing", start_date=date(2024, 1, 2), end_date=date(2024, 1, 1))
    with pytest.raises(ValueError, match="pool_size"):
        plan("parsing", pool_size=0)


def test_query_used_joins_the_queries_sent_with_the_documented_separator() -> None:
    assert joined_queries(['all:"a" AND all:"b"']) == 'all:"a" AND all:"b"'
    assert joined_queries(["P", "B"]) == f"P{QUERY_SEPARATOR}B" == "P ; B"
