"""Generated invalid `research.execute` messages, each with the field its error must name.

Every case starts from a valid request and breaks one thing: a wrong type, a
missing or unknown field, a number out of range, an impossible date, a huge or
control-character string, a bad budget, a payload that is not an object, or
arguments that are not `kwargs={"request": {...}}` at all.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

VALID: dict[str, Any] = {"query": "graph neural networks", "max_papers": 3}
FIELDS = frozenset(
    {
        "query",
        "max_papers",
        "start_date",
        "end_date",
        "include_summaries",
        "categories",
        "min_relevance",
        "sources",
        "budget",
    }
)
BUDGET_FIELDS = ("max_llm_calls", "max_llm_tokens")


@dataclass(frozen=True)
class InvalidJob:
    """A message's arguments, and the field its InvalidRequest must name."""

    kind: str
    field: str
    kwargs: dict[str, Any]
    args: tuple[Any, ...] = field(default=())


def _request(kind: str, name: str, **fields: Any) -> InvalidJob:
    return InvalidJob(kind, name, {"request": {**VALID, **fields}})


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _not_int(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _not_number(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int | float)


wrong_types = st.one_of(
    json_values.filter(lambda v: not isinstance(v, str)).map(
        lambda v: _request("wrong type", "query", query=v)
    ),
    json_values.filter(_not_int).map(lambda v: _request("wrong type", "max_papers", max_papers=v)),
    json_values.filter(lambda v: v is not None and not isinstance(v, str)).map(
        lambda v: _request("wrong type", "start_date", start_date=v)
    ),
    json_values.filter(lambda v: not isinstance(v, bool)).map(
        lambda v: _request("wrong type", "include_summaries", include_summaries=v)
    ),
    json_values.filter(lambda v: not isinstance(v, list)).map(
        lambda v: _request("wrong type", "categories", categories=v)
    ),
    json_values.filter(lambda v: not isinstance(v, str)).map(
        lambda v: _request("wrong type", "categories.0", categories=[v])
    ),
    json_values.filter(_not_number).map(
        lambda v: _request("wrong type", "min_relevance", min_relevance=v)
    ),
)

missing_fields = st.sampled_from(["max_papers", "min_relevance"]).map(
    lambda other: InvalidJob(
        "missing field", "query", {"request": {other: 3 if other == "max_papers" else 0.5}}
    )
)

unknown_fields = st.tuples(
    st.text(min_size=1, max_size=20).filter(lambda name: name not in FIELDS), json_values
).map(lambda item: InvalidJob("unknown field", item[0], {"request": {**VALID, item[0]: item[1]}}))

out_of_range = st.one_of(
    st.integers(max_value=0).map(lambda n: _request("out of range", "max_papers", max_papers=n)),
    st.integers(min_value=21).map(lambda n: _request("out of range", "max_papers", max_papers=n)),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False).map(
        lambda x: _request("out of range", "min_relevance", min_relevance=x)
    ),
    st.floats(min_value=1.000001, allow_nan=False, allow_infinity=False).map(
        lambda x: _request("out of range", "min_relevance", min_relevance=x)
    ),
    st.text(string.ascii_letters, min_size=1, max_size=2).map(
        lambda q: _request("out of range", "query", query=q)
    ),
    st.integers(21, 40).map(
        lambda n: _request("out of range", "categories", categories=["cs.LG"] * n)
    ),
)

_impossible_dates = st.sampled_from(
    ["2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "2024-04-31", "0000-01-01"]
) | st.text(max_size=12).filter(lambda text: not text[:4].isdigit())
impossible_dates = st.one_of(
    _impossible_dates.map(lambda d: _request("impossible date", "start_date", start_date=d)),
    _impossible_dates.map(lambda d: _request("impossible date", "end_date", end_date=d)),
    st.lists(st.dates(), min_size=2, max_size=2, unique=True).map(
        lambda pair: _request(
            "impossible date",
            "end_date",
            start_date=max(pair).isoformat(),
            end_date=min(pair).isoformat(),
        )
    ),
)

huge_strings = st.sampled_from([501, 20_000, 1_000_000]).map(
    lambda size: _request("huge string", "query", query="a" * size)
)

_control = st.sampled_from([chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127)])
control_characters = st.one_of(
    st.tuples(st.integers(0, 21), _control).map(
        lambda item: _request(
            "control character",
            "query",
            query="graph neural networks"[: item[0]] + item[1] + "graph neural networks"[item[0] :],
        )
    ),
    _control.map(lambda c: _request("control character", "categories.0", categories=[f"cs{c}LG"])),
)

# A budget's caps are positive integers, either or both; no other key.
invalid_budgets = st.one_of(
    st.tuples(st.sampled_from(BUDGET_FIELDS), st.integers(max_value=0)).map(
        lambda item: _request("bad budget", f"budget.{item[0]}", budget={item[0]: item[1]})
    ),
    st.tuples(st.sampled_from(BUDGET_FIELDS), json_values.filter(_not_int)).map(
        lambda item: (
            _request("bad budget", f"budget.{item[0]}", budget={item[0]: item[1]})
            if item[1] is not None
            else _request("bad budget", "budget", budget=[item[0]])
        )
    ),
    st.text(min_size=1, max_size=20)
    .filter(lambda name: name not in BUDGET_FIELDS)
    .map(lambda name: _request("bad budget", f"budget.{name}", budget={name: 5})),
    json_values.filter(lambda v: v is not None and not isinstance(v, dict)).map(
        lambda v: _request("bad budget", "budget", budget=v)
    ),
)

non_dict_requests = json_values.filter(lambda v: not isinstance(v, dict)).map(
    lambda v: InvalidJob("non-object request", "request", {"request": v})
)

bad_arguments = st.one_of(
    st.just(InvalidJob("missing request", "request", {})),
    st.dictionaries(
        st.sampled_from(sorted(FIELDS)), st.just("graph neural networks"), min_size=1
    ).map(lambda kwargs: InvalidJob("missing request", "request", kwargs)),
    st.just(InvalidJob("positional arguments", "args", {}, (VALID,))),
)


def invalid_jobs() -> st.SearchStrategy[InvalidJob]:
    """Any of the invalid messages above."""
    return st.one_of(
        wrong_types,
        missing_fields,
        unknown_fields,
        out_of_range,
        impossible_dates,
        huge_strings,
        control_characters,
        invalid_budgets,
        non_dict_requests,
        bad_arguments,
    )
