"""Embedders: the local hashing one, and the OpenAI-compatible one behind a mock transport."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import httpx
import openai
import pytest

from tasks.embeddings import HashingEmbedder, OpenAIEmbedder
from tasks.errors import PermanentUpstreamError, TransientUpstreamError

Handler = Callable[[httpx.Request], httpx.Response]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def norm(vector: list[float]) -> float:
    return math.sqrt(cosine(vector, vector))


# --- HashingEmbedder --------------------------------------------------------------------

GNN_ABSTRACT = (
    "We train graph neural networks to predict the properties of molecules from their "
    "molecular graphs, using message passing over atoms and bonds."
)
COMEDY_ABSTRACT = (
    "A multi-agent system writes short sketch comedy videos; critics aligned with viewer "
    "preferences score the humour of each script."
)


def test_each_text_gets_a_unit_vector_of_the_chosen_dimension_in_order() -> None:
    embedder = HashingEmbedder(dimension=128)

    forward = embedder.embed([GNN_ABSTRACT, COMEDY_ABSTRACT])
    backward = embedder.embed([COMEDY_ABSTRACT, GNN_ABSTRACT])

    assert [len(vector) for vector in forward] == [128, 128]
    assert [norm(vector) for vector in forward] == pytest.approx([1.0, 1.0])
    assert forward == backward[::-1]
    assert embedder.name == "local-hashing-v1-128"


def test_default_dimension_is_384_and_named_so() -> None:
    embedder = HashingEmbedder()

    (vector,) = embedder.embed(["graph neural networks"])

    assert len(vector) == 384
    assert embedder.name == "local-hashing-v1-384"


def test_a_related_text_is_closer_than_an_unrelated_one() -> None:
    query, related, unrelated = HashingEmbedder().embed(
        ["graph neural networks for molecules", GNN_ABSTRACT, COMEDY_ABSTRACT]
    )

    assert cosine(query, related) > 0.3
    assert cosine(query, related) > cosine(query, unrelated) + 0.3


def test_a_plural_lands_close_to_its_singular() -> None:
    singular, plural, other = HashingEmbedder().embed(
        ["transformer", "transformers", "convolution"]
    )

    assert cosine(singular, plural) > 0.3
    assert cosine(singular, other) < 0.1


def test_case_and_compatibility_forms_do_not_matter() -> None:
    plain, shouted, ligature = HashingEmbedder().embed(
        ["schrödinger equation fine", "SCHRÖDINGER EQUATION FINE", "Schrödinger equation ﬁne"]
    )

    assert cosine(plain, shouted) == pytest.approx(1.0)
    assert cosine(plain, ligature) == pytest.approx(1.0)


def test_blank_and_stopword_only_texts_give_the_zero_vector_not_nan() -> None:
    blank, spaces, stopwords, real = HashingEmbedder(dimension=16).embed(
        ["", "  \n\t", "of the and", "graphs"]
    )

    assert blank == spaces == stopwords == [0.0] * 16
    assert norm(real) == pytest.approx(1.0)


def test_no_texts_give_no_vectors() -> None:
    assert HashingEmbedder().embed([]) == []


def test_a_dimension_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="dimension"):
        HashingEmbedder(dimension=0)


def test_vectors_are_identical_in_another_process_with_another_hash_seed() -> None:
    texts = [GNN_ABSTRACT, "Übersetzung mit Transformern — 機械翻訳"]
    script = (
        "import json, sys; from tasks.embeddings import HashingEmbedder; "
        "print(json.dumps(HashingEmbedder().embed(json.loads(sys.argv[1]))))"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}

    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(texts)],
        capture_output=True,
        check=True,
        env=environment,
        text=True,
        timeout=60,
    )

    assert json.loads(completed.stdout) == HashingEmbedder().embed(texts)


def test_vectors_match_those_already_stored_under_this_name() -> None:
    # Qdrant holds vectors computed by earlier releases under the same name. If
    # this fails, the recipe changed: bump the version in HashingEmbedder.name.
    (vector,) = HashingEmbedder(dimension=384).embed(["Graph neural networks"])

    strongest = [(i, round(value, 4)) for i, value in enumerate(vector) if abs(value) > 0.2]
    assert strongest == [
        (143, -0.3849),
        (171, -0.2357),
        (225, -0.3849),
        (302, -0.2357),
        (314, 0.3849),
        (341, 0.291),
    ]


# --- OpenAIEmbedder ---------------------------------------------------------------------

BASE_URL = "http://embeddings.test/v1"


def openai_client(handler: Handler) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=BASE_URL,
        api_key="test",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )


def embeddings_body(vectors: Sequence[object], order: list[int] | None = None) -> dict[str, object]:
    """The embeddings endpoint's wire format, items listed in `order` (default: by index)."""
    order = order if order is not None else list(range(len(vectors)))
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in order],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


def error_body(message: str, kind: str, code: str | None) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class RecordingServer:
    """Answers every request with one response and keeps the JSON bodies it received."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.requests: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url == f"{BASE_URL}/embeddings"
        self.requests.append(json.loads(request.content))
        return self.response


def test_openai_vectors_come_back_unit_length_in_input_order_from_one_request() -> None:
    server = RecordingServer(
        httpx.Response(200, json=embeddings_body([[3.0, 4.0], [0.0, 2.0]], order=[1, 0]))
    )
    embedder = OpenAIEmbedder(openai_client(server), "text-embedding-3-small")

    vectors = embedder.embed(["first", "second"])

    assert vectors == [pytest.approx([0.6, 0.8]), pytest.approx([0.0, 1.0])]
    assert server.requests == [
        {
            "model": "text-embedding-3-small",
            "input": ["first", "second"],
            "encoding_format": "float",
        }
    ]
    assert embedder.name == "text-embedding-3-small"


def test_openai_blank_texts_are_not_sent_and_get_the_zero_vector() -> None:
    server = RecordingServer(httpx.Response(200, json=embeddings_body([[1.0, 0.0], [0.0, 5.0]])))
    embedder = OpenAIEmbedder(openai_client(server), "m")

    vectors = embedder.embed(["first", "  ", "third"])

    assert vectors == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    assert server.requests[0]["input"] == ["first", "third"]


def test_openai_nothing_to_embed_sends_nothing() -> None:
    server = RecordingServer(httpx.Response(500))
    embedder = OpenAIEmbedder(openai_client(server), "m")

    assert embedder.embed([]) == []
    with pytest.raises(ValueError, match="blank"):
        embedder.embed(["", " "])
    assert server.requests == []


def test_openai_rate_limit_is_transient_and_carries_retry_after() -> None:
    response = httpx.Response(
        429,
        headers={"retry-after": "7"},
        json=error_body("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    )
    embedder = OpenAIEmbedder(openai_client(RecordingServer(response)), "m")

    with pytest.raises(TransientUpstreamError) as raised:
        embedder.embed(["text"])

    assert raised.value.service == "embeddings"
    assert raised.value.retry_after == 7.0
    assert "Rate limit reached" in str(raised.value)
    assert isinstance(raised.value.__cause__, openai.RateLimitError)


def test_openai_server_errors_are_transient() -> None:
    response = httpx.Response(503, text="upstream is down")
    embedder = OpenAIEmbedder(openai_client(RecordingServer(response)), "m")

    with pytest.raises(TransientUpstreamError, match="HTTP 503") as raised:
        embedder.embed(["text"])

    assert raised.value.retry_after is None


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("timed out"), httpx.ConnectError("connection refused")],
    ids=["timeout", "connection-refused"],
)
def test_openai_timeouts_and_connection_failures_are_transient(failure: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    embedder = OpenAIEmbedder(openai_client(handler), "m")

    with pytest.raises(TransientUpstreamError) as raised:
        embedder.embed(["text"])

    assert isinstance(raised.value.__cause__, openai.APIConnectionError)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            # A 400 body recorded from api.openai.com (Future-House/paper-qa cassettes).
            error_body(
                "You uploaded an unsupported image. Please make sure your image has of one"
                " the following formats: ['png', 'jpeg', 'gif', 'webp'].",
                "invalid_request_error",
                "invalid_image_format",
            ),
            "HTTP 400 invalid_request_error: You uploaded an unsupported image.",
        ),
        (
            401,
            error_body(
                "Incorrect API key provided: test.", "invalid_request_error", "invalid_api_key"
            ),
            "HTTP 401 invalid_request_error: Incorrect API key provided",
        ),
        (
            404,
            error_body(
                "The model `nope` does not exist", "invalid_request_error", "model_not_found"
            ),
            "HTTP 404 invalid_request_error: The model `nope` does not exist",
        ),
    ],
)
def test_openai_client_errors_are_permanent_and_quote_the_server(
    status: int, body: dict[str, object], expected: str
) -> None:
    embedder = OpenAIEmbedder(
        openai_client(RecordingServer(httpx.Response(status, json=body))), "m"
    )

    with pytest.raises(PermanentUpstreamError) as raised:
        embedder.embed(["text"])

    assert raised.value.service == "embeddings"
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"object": "list"}),
        httpx.Response(200, json=embeddings_body([[1.0, 0.0]])),  # one vector for two texts
        httpx.Response(200, json=embeddings_body([[1.0, 0.0], [1.0]])),  # ragged
        httpx.Response(
            200, json=embeddings_body([[1.0, 0.0], "AACAPw=="])
        ),  # base64, not asked for
        httpx.Response(200, json=embeddings_body([[], []])),
        httpx.Response(200, text="<html>maintenance</html>"),
    ],
    ids=["no-data", "too-few", "ragged", "base64", "empty-vectors", "html"],
)
def test_openai_malformed_success_responses_are_permanent(response: httpx.Response) -> None:
    embedder = OpenAIEmbedder(openai_client(RecordingServer(response)), "m")

    with pytest.raises(PermanentUpstreamError, match="embeddings"):
        embedder.embed(["first", "second"])


def test_openai_json_cut_short_is_transient() -> None:
    response = httpx.Response(
        200, text='{"object": "list", "da', headers={"content-type": "application/json"}
    )
    embedder = OpenAIEmbedder(openai_client(RecordingServer(response)), "m")

    with pytest.raises(TransientUpstreamError, match="embeddings: malformed response, not JSON"):
        embedder.embed(["text"])


# --- Usage for the job's ledger -----------------------------------------------------------


def test_hashing_reports_no_tokens_and_the_same_vectors_as_embed() -> None:
    embedder = HashingEmbedder()

    batch = embedder.embed_with_usage(["graph neural networks", "protein folding"])

    assert batch.tokens == 0
    assert batch.vectors == embedder.embed(["graph neural networks", "protein folding"])


def test_openai_usage_is_the_servers_prompt_tokens() -> None:
    server = RecordingServer(httpx.Response(200, json=embeddings_body([[1.0, 0.0], [0.0, 5.0]])))
    embedder = OpenAIEmbedder(openai_client(server), "m")

    batch = embedder.embed_with_usage(["first", "second"])

    assert batch.tokens == 8
    assert batch.vectors == [[1.0, 0.0], [0.0, 1.0]]


def test_openai_usage_is_zero_when_the_server_sends_none() -> None:
    body = embeddings_body([[1.0, 0.0]])
    del body["usage"]
    server = RecordingServer(httpx.Response(200, json=body))

    batch = OpenAIEmbedder(openai_client(server), "m").embed_with_usage(["first"])

    assert batch.tokens == 0
