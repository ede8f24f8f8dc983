"""The OpenAI SDK's errors as research-arm's upstream errors, for the LLM and the embeddings.

One rule for every OpenAI-compatible call, the SDK's own retry policy
(`openai._base_client.BaseClient._should_retry`), applied by our task
retries since the clients are built with `max_retries=0`:

    openai.APIConnectionError, APITimeoutError     transient
    openai.APIStatusError 408, 409, 429, 5xx       transient, with the server's Retry-After
    openai.APIStatusError any other status         permanent (400, 401, 403, 404, 422, ...)
        an `x-should-retry: true|false` header overrides the status, as the SDK obeys it
    openai.APIResponseValidationError              permanent
    a JSON body that does not parse                transient (the SDK lets json's error through)
    any other openai.OpenAIError                   permanent

Messages name what happened and quote the server's own message when it sent one.
"""

from __future__ import annotations

import json
from typing import Final

import openai

from tasks.errors import PermanentUpstreamError, TransientUpstreamError
from tasks.retry import retry_after_seconds

# A body the SDK could not read as JSON raises json's (or the decoder's) own
# error, not an SDK one; both are ValueErrors.
UNREADABLE_BODY_ERRORS: Final = (json.JSONDecodeError, UnicodeDecodeError)
# What an OpenAI-compatible call can raise that `upstream_error` translates.
OPENAI_CALL_ERRORS: Final = (openai.OpenAIError, *UNREADABLE_BODY_ERRORS)

# Statuses the SDK itself retries, beside every 5xx: request timeout, lock
# timeout ("conflict"), rate limit.
_RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})

OpenAICallError = openai.OpenAIError | json.JSONDecodeError | UnicodeDecodeError


def upstream_error(
    service: str, exc: OpenAICallError
) -> TransientUpstreamError | PermanentUpstreamError:
    """The upstream error to raise (`from exc`) for a failed call to `service`.

    Args:
        service: which upstream failed, as errors name it: "llm" or "embeddings".
        exc: what the SDK call raised; one of `OPENAI_CALL_ERRORS`.
    """
    if isinstance(exc, openai.APITimeoutError):
        return TransientUpstreamError(service, f"request timed out{_cause(exc)}")
    if isinstance(exc, openai.APIConnectionError):
        # The SDK's own message is only "Connection error."; the httpx error it
        # wraps says what went wrong.
        return TransientUpstreamError(service, f"connection failed{_cause(exc)}")
    if isinstance(exc, openai.APIStatusError):
        message = _status_message(exc)
        if _worth_retrying(exc):
            return TransientUpstreamError(
                service, message, retry_after_seconds(exc.response.headers)
            )
        return PermanentUpstreamError(service, message)
    if isinstance(exc, openai.APIResponseValidationError):
        # Raised on a 2xx whose JSON does not match the API's schema (only with
        # the SDK's strict validation on), outside the SDK's retry loop: the
        # server answered in full, with a body the API never promises (a base
        # URL pointing at another service, an incompatible server), and asking
        # again gets the same body.
        return PermanentUpstreamError(service, f"malformed response: {exc}")
    if isinstance(exc, UNREADABLE_BODY_ERRORS):
        # Not JSON at all, unlike the case above: usually a body cut short
        # (a proxy or server failing mid-answer), which another try gets whole;
        # the arXiv feed's not-well-formed XML is treated alike.
        return TransientUpstreamError(service, f"malformed response, not JSON: {exc}")
    return PermanentUpstreamError(service, f"{type(exc).__name__}: {exc}")


def _worth_retrying(exc: openai.APIStatusError) -> bool:
    should_retry: str | None = exc.response.headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    return exc.status_code in _RETRYABLE_STATUSES or exc.status_code >= 500


def _status_message(exc: openai.APIStatusError) -> str:
    """ "HTTP 401 invalid_request_error: Incorrect API key provided", or the reason phrase."""
    # The SDK keeps the error object of OpenAI's `{"error": {...}}` body here.
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    kind = f" {exc.type}" if exc.type else ""
    return f"HTTP {exc.status_code}{kind}: {message or exc.response.reason_phrase}"


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__
    return f" ({type(cause).__name__}: {cause})" if cause is not None else ""
