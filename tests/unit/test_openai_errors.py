"""Every error an OpenAI-compatible call can raise, sorted into transient and permanent."""

from __future__ import annotations

import json
from typing import TypeVar

import httpx
import openai
import pytest

from tasks.errors import PermanentUpstreamError, TransientUpstreamError
from tasks.openai_errors import upstream_error

Failure = TypeVar("Failure", bound=BaseException)

REQUEST = httpx.Request("POST", "https://llm.test/v1/chat/completions")


def response(
    status: int,
    headers: dict[str, str] | None = None,
    *,
    json_body: object = None,
    content: bytes | None = None,
) -> httpx.Response:
    return httpx.Response(status, headers=headers, json=json_body, content=content, request=REQUEST)


def openai_error(message: str, kind: str, code: str | None = None) -> dict[str, object]:
    """The error object of OpenAI's `{"error": {...}}` body, as the SDK keeps it in `body`."""
    return {"message": message, "type": kind, "param": None, "code": code}


def status_error(
    error_class: type[openai.APIStatusError],
    status: int,
    headers: dict[str, str] | None = None,
    body: dict[str, object] | None = None,
) -> openai.APIStatusError:
    http = response(status, headers, json_body={"error": body} if body else None)
    return error_class(f"Error code: {status}", response=http, body=body)


def caused_by(error: Failure, cause: BaseException) -> Failure:
    """`error` as the SDK raises it: `raise error from cause`."""
    error.__cause__ = cause
    return error


def test_a_timeout_is_transient_and_says_what_timed_out() -> None:
    timeout = caused_by(
        openai.APITimeoutError(request=REQUEST), httpx.ReadTimeout("timed out", request=REQUEST)
    )

    error = upstream_error("llm", timeout)

    assert isinstance(error, TransientUpstreamError)
    assert str(error) == "llm: request timed out (ReadTimeout: timed out)"
    assert error.retry_after is None


def test_a_connection_failure_is_transient_and_names_the_httpx_error() -> None:
    refused = caused_by(
        openai.APIConnectionError(request=REQUEST),
        httpx.ConnectError("connection refused", request=REQUEST),
    )

    error = upstream_error("embeddings", refused)

    assert isinstance(error, TransientUpstreamError)
    assert str(error) == "embeddings: connection failed (ConnectError: connection refused)"


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None)],
    ids=["retry-after", "retry-after-ms", "no-header"],
)
def test_a_rate_limit_is_transient_and_carries_the_servers_wait(
    headers: dict[str, str], retry_after: float | None
) -> None:
    body = openai_error("Rate limit reached for requests", "requests", "rate_limit_exceeded")
    limited = status_error(openai.RateLimitError, 429, headers, body)

    error = upstream_error("llm", limited)

    assert isinstance(error, TransientUpstreamError)
    assert error.retry_after == retry_after
    assert str(error) == "llm: HTTP 429 requests: Rate limit reached for requests"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_transient(status: int) -> None:
    failed = status_error(openai.InternalServerError, status, {"retry-after": "2"})

    error = upstream_error("llm", failed)

    assert isinstance(error, TransientUpstreamError)
    assert error.retry_after == 2.0
    # Without an error body, the status line's reason phrase says what happened.
    assert str(error) == f"llm: HTTP {status}: {httpx.codes.get_reason_phrase(status)}"


@pytest.mark.parametrize(
    ("error_class", "status"),
    [(openai.APIStatusError, 408), (openai.ConflictError, 409), (openai.RateLimitError, 429)],
    ids=["request-timeout", "conflict", "rate-limit"],
)
def test_the_client_errors_the_sdk_retries_are_transient(
    error_class: type[openai.APIStatusError], status: int
) -> None:
    error = upstream_error("embeddings", status_error(error_class, status))

    assert isinstance(error, TransientUpstreamError)
    assert f"HTTP {status}" in str(error)


@pytest.mark.parametrize(
    ("error_class", "status", "body", "message"),
    [
        (
            openai.BadRequestError,
            400,
            openai_error("bad model", "invalid_request_error"),
            "HTTP 400 invalid_request_error: bad model",
        ),
        (
            openai.AuthenticationError,
            401,
            openai_error("Incorrect API key provided: test.", "invalid_request_error"),
            "HTTP 401 invalid_request_error: Incorrect API key provided: test.",
        ),
        (
            openai.PermissionDeniedError,
            403,
            openai_error("Country not supported", "request_forbidden"),
            "HTTP 403 request_forbidden: Country not supported",
        ),
        (
            openai.NotFoundError,
            404,
            openai_error("The model `nope` does not exist", "invalid_request_error"),
            "HTTP 404 invalid_request_error: The model `nope` does not exist",
        ),
        (
            openai.UnprocessableEntityError,
            422,
            None,
            "HTTP 422: Unprocessable Entity",
        ),
    ],
    ids=["400", "401", "403", "404", "422"],
)
def test_other_client_errors_are_permanent_and_quote_the_server(
    error_class: type[openai.APIStatusError],
    status: int,
    body: dict[str, object] | None,
    message: str,
) -> None:
    error = upstream_error("llm", status_error(error_class, status, body=body))

    assert isinstance(error, PermanentUpstreamError)
    assert str(error) == f"llm: {message}"


def test_the_servers_x_should_retry_header_overrides_the_status() -> None:
    # As the SDK does: the server knows best whether asking again can help.
    retry = status_error(openai.BadRequestError, 400, {"x-should-retry": "true"})
    do_not = status_error(openai.InternalServerError, 503, {"x-should-retry": "false"})

    assert isinstance(upstream_error("llm", retry), TransientUpstreamError)
    assert isinstance(upstream_error("llm", do_not), PermanentUpstreamError)


def test_a_complete_body_of_the_wrong_schema_is_permanent() -> None:
    # A server that is not the API (a wrong base URL) answers 200 with its own JSON.
    body = {"status": "ok", "service": "something else"}
    invalid = openai.APIResponseValidationError(response(200, json_body=body), body)

    error = upstream_error("embeddings", invalid)

    assert isinstance(error, PermanentUpstreamError)
    assert str(error) == (
        "embeddings: malformed response: Data returned by API invalid for expected schema."
    )


@pytest.mark.parametrize(
    "body", [b'{"id": "chatcmpl-', b'{"id": "\xff"}'], ids=["cut-short", "not-utf-8"]
)
def test_a_body_that_is_not_json_is_transient(body: bytes) -> None:
    # The SDK parses a 2xx JSON body with httpx's `Response.json`, whose errors it lets through.
    try:
        response(200, {"content-type": "application/json"}, content=body).json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        unreadable = exc
    else:
        pytest.fail("the body parsed")

    error = upstream_error("llm", unreadable)

    assert isinstance(error, TransientUpstreamError)
    assert str(error).startswith("llm: malformed response, not JSON: ")


@pytest.mark.parametrize(
    "other",
    [openai.APIError("stream error", REQUEST, body=None), openai.OpenAIError("no api key")],
    ids=["api-error", "openai-error"],
)
def test_any_other_sdk_error_is_permanent(other: openai.OpenAIError) -> None:
    error = upstream_error("llm", other)

    assert isinstance(error, PermanentUpstreamError)
    assert str(error) == f"llm: {type(other).__name__}: {other}"
