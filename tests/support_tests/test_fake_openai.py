"""The fake OpenAI API, driven by the real openai SDK: answers, embeddings and faults."""

from __future__ import annotations

import http.client
import json
import math
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.fake_openai import FakeOpenAIServer, Fault

ABSTRACT = (
    "We propose a decoder for the surface code that runs in real time. "
    "It matches minimum-weight perfect matching in accuracy! "
    "A third sentence that the summary leaves out."
)
JSON_HEADERS = {"Content-Type": "application/json"}
SUMMARY = (
    "Summary: We propose a decoder for the surface code that runs in real time. "
    "It matches minimum-weight perfect matching in accuracy!"
)


@pytest.fixture
def llm(fake_openai: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    """The real SDK, pointed at the fake, with no retries of its own."""
    with openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0) as client:
        yield client


def summarise(llm: openai.OpenAI, user_content: str) -> str | None:
    completion = llm.chat.completions.create(
        model="fake-summarizer-1",
        messages=[
            {"role": "system", "content": "Summarise the paper in two sentences."},
            {"role": "user", "content": user_content},
        ],
    )
    return completion.choices[0].message.content


# --- chat completions ------------------------------------------------------------------


def test_chat_summarises_the_abstract_of_a_json_paper(
    llm: openai.OpenAI, fake_openai: FakeOpenAIServer
) -> None:
    paper = json.dumps({"title": "Real-time decoding", "abstract": ABSTRACT})

    assert summarise(llm, paper) == SUMMARY

    [request] = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test"
    assert request.json["messages"][1]["content"] == paper


@pytest.mark.parametrize(
    "user_content",
    [
        f"Summarise this paper.\n<paper><title>T</title><abstract>{ABSTRACT}</abstract></paper>",
        f"Paper follows: {json.dumps({'title': 'T', 'abstract': ABSTRACT})} Thanks.",
        ABSTRACT,
    ],
    ids=["tagged", "json-in-prose", "plain"],
)
def test_chat_finds_the_abstract_however_it_is_wrapped(
    llm: openai.OpenAI, user_content: str
) -> None:
    assert summarise(llm, user_content) == SUMMARY


def test_chat_completion_has_openais_shape(
    llm: openai.OpenAI, fake_openai: FakeOpenAIServer
) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": ABSTRACT}]
    body = {"model": "gpt-4o-mini", "messages": messages}
    response = httpx.post(f"{fake_openai.url}/chat/completions", json=body)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    completion = response.json()
    assert set(completion) == {
        "id", "object", "created", "model", "choices", "usage", "service_tier",
        "system_fingerprint",
    }  # fmt: skip
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", completion["id"])
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-4o-mini"
    [choice] = completion["choices"]
    assert choice["message"] == {
        "role": "assistant", "content": SUMMARY, "refusal": None, "annotations": [],
    }  # fmt: skip
    assert (choice["index"], choice["logprobs"], choice["finish_reason"]) == (0, None, "stop")
    usage = completion["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert set(usage["prompt_tokens_details"]) == {"cached_tokens", "audio_tokens"}

    sdk_completion = llm.chat.completions.create(model="m", messages=messages)
    assert sdk_completion.usage is not None and sdk_completion.usage.total_tokens > 0


def test_a_request_without_model_is_openais_400(fake_openai: FakeOpenAIServer) -> None:
    body = {"messages": [{"role": "user", "content": ABSTRACT}]}

    response = httpx.post(f"{fake_openai.url}/chat/completions", json=body)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "you must provide a model parameter",
        "type": "invalid_request_error",
        "param": "model",
        "code": None,
    }


# --- embeddings and models -------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors(llm: openai.OpenAI) -> None:
    texts = ["graph neural networks", "quantum error correction", "graph neural networks"]

    # The SDK asks for base64 unless told otherwise; both encodings must agree.
    as_base64 = llm.embeddings.create(model="text-embedding-3-small", input=texts)
    as_floats = llm.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )
    single = llm.embeddings.create(model="text-embedding-3-small", input=texts[1])

    vectors = [item.embedding for item in as_floats.data]
    assert [item.index for item in as_floats.data] == [0, 1, 2]
    assert all(len(vector) == 64 for vector in vectors)
    assert all(math.isclose(math.hypot(*vector), 1.0) for vector in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert single.data[0].embedding == pytest.approx(vectors[1], abs=1e-6)  # float32 on the wire
    for decoded, exact in zip(as_base64.data, as_floats.data, strict=True):
        assert decoded.embedding == pytest.approx(exact.embedding, abs=1e-6)


def test_embeddings_honour_requested_dimensions(llm: openai.OpenAI) -> None:
    response = llm.embeddings.create(model="e", input="x", dimensions=8, encoding_format="float")

    assert len(response.data[0].embedding) == 8


def test_models_are_listed(llm: openai.OpenAI) -> None:
    assert "gpt-4o-mini" in [model.id for model in llm.models.list()]


# --- faults, as the SDK surfaces them ----------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_an_api_status_error(
    llm: openai.OpenAI, fake_openai: FakeOpenAIServer, status: int
) -> None:
    fake_openai.inject(Fault.status(status))

    with pytest.raises(openai.APIStatusError) as error:
        summarise(llm, ABSTRACT)

    assert error.value.status_code == status
    assert isinstance(error.value.body, dict) and error.value.body["type"] == "server_error"
    assert summarise(llm, ABSTRACT) == SUMMARY  # the fault was served once


def test_rate_limit_is_a_rate_limit_error_with_retry_after(
    llm: openai.OpenAI, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(Fault.rate_limited(retry_after=1.5))

    with pytest.raises(openai.RateLimitError) as error:
        summarise(llm, ABSTRACT)

    assert error.value.response.headers["retry-after"] == "2"
    assert error.value.response.headers["retry-after-ms"] == "1500"


def test_hang_is_a_timeout(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.inject(Fault.hang(5))
    with (
        openai.OpenAI(
            base_url=fake_openai.url, api_key="test", max_retries=0, timeout=0.3
        ) as impatient,
        pytest.raises(openai.APITimeoutError),
    ):
        summarise(impatient, ABSTRACT)


@pytest.mark.parametrize("fault", [Fault.reset(), Fault.truncated()], ids=["reset", "truncated"])
def test_a_dropped_connection_is_a_connection_error(
    llm: openai.OpenAI, fake_openai: FakeOpenAIServer, fault: Fault
) -> None:
    fake_openai.inject(fault)

    with pytest.raises(openai.APIConnectionError) as error:
        summarise(llm, ABSTRACT)

    assert not isinstance(error.value, openai.APITimeoutError)


def test_malformed_json_fails_to_parse(llm: openai.OpenAI, fake_openai: FakeOpenAIServer) -> None:
    fake_openai.inject(Fault.malformed())

    with pytest.raises(json.JSONDecodeError):
        summarise(llm, ABSTRACT)


def test_content_faults_replace_the_answer(
    llm: openai.OpenAI, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(Fault.empty_content(), Fault.content("I cannot help with that."))

    assert summarise(llm, ABSTRACT) == ""
    assert summarise(llm, ABSTRACT) == "I cannot help with that."
    assert summarise(llm, ABSTRACT) == SUMMARY


def test_a_fault_can_target_one_endpoint(llm: openai.OpenAI, fake_openai: FakeOpenAIServer) -> None:
    fake_openai.inject(Fault.status(500, endpoint="embeddings"))

    assert summarise(llm, ABSTRACT) == SUMMARY
    with pytest.raises(openai.InternalServerError):
        llm.embeddings.create(model="e", input="x")
    assert fake_openai.pending_faults == []


def test_arxiv_only_faults_are_refused(fake_openai: FakeOpenAIServer) -> None:
    with pytest.raises(ValueError, match="does not serve"):
        fake_openai.inject(Fault.entity_bomb())


# --- load and command line -------------------------------------------------------------


def test_serves_hundreds_of_concurrent_requests(fake_openai: FakeOpenAIServer) -> None:
    clients = 600
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 3 * clients:
        pytest.skip("too few file descriptors allowed for this many sockets")
    # Every answer waits, so all the connections are open at the same time.
    fake_openai.latency_seconds = 0.5
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": ABSTRACT}]})

    def post_once(_: int) -> int:
        # One plain stdlib connection per thread: a shared httpx pool, not the
        # server, would be the bottleneck at this concurrency.
        connection = http.client.HTTPConnection(fake_openai.host, fake_openai.port, timeout=30)
        try:
            connection.request("POST", "/v1/chat/completions", body, JSON_HEADERS)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = list(pool.map(post_once, range(clients)))

    assert statuses == [200] * clients
    assert len(fake_openai.requests) == clients
    assert time.monotonic() - started < 15  # concurrent, not one after another (300 s)


def test_runs_from_the_command_line_until_sigint() -> None:
    command = [sys.executable, "-m", "tests.support.fake_openai", "--port", "0", "--latency", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
            with openai.OpenAI(base_url=base_url, api_key="test", max_retries=0) as client:
                assert summarise(client, ABSTRACT) == SUMMARY
        finally:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
