"""A local HTTP server speaking the OpenAI API as the openai Python SDK expects it.

- `POST /v1/chat/completions` (not streamed): a `chat.completion` shaped like
  OpenAI's own, whose content is "Summary: " and the first two sentences of the
  paper in the last user message, so a test can tell which paper it summarises.
  The paper's text is an `<abstract>` element if the message has one, else the
  longest string value of a JSON object in the message, else the whole message.
- `POST /v1/embeddings`: unit vectors derived from a hash of each input (64
  dimensions unless the request asks for `dimensions`), as floats or as base64,
  which the SDK asks for unless told otherwise.
- `GET /v1/models`: the list of models.

Every answer carries a `usage` field, as OpenAI's do; `reported_usage` lists
the chat completions' ones, so a test can check what a client counted.

Faults (see `tests.support.Fault`): status (500, 503 with OpenAI's error body;
429 with Retry-After and retry-after-ms), hang, reset, truncated, malformed (a
200 whose JSON is cut short), and for chat only `content` / `empty_content`.
Give a fault `endpoint="embeddings"` (or "chat/completions", "models") to aim
it at one endpoint.

Run it on its own with `python -m tests.support.fake_openai --port 0 --latency 0.5`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

from tests.support import (
    FakeHTTPServer,
    Fault,
    RecordedRequest,
    Reply,
    retry_after_header,
    serve_command_line,
)

__all__ = ["FakeOpenAIServer", "Fault", "embedding_of", "paper_text", "summarise"]

JSON_CONTENT_TYPE = "application/json"
DEFAULT_EMBEDDING_DIMENSIONS = 64
MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")

_ERRORS = {
    429: ("Rate limit reached for requests. Please try again later.", "requests"),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error"),
}


class FakeOpenAIServer(FakeHTTPServer):
    """The OpenAI API on a loopback port; point the SDK's `base_url` at `url`."""

    supported_faults = frozenset({"status", "hang", "reset", "truncated", "malformed", "content"})

    def __init__(
        self,
        latency_seconds: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(latency_seconds=latency_seconds, host=host, port=port)
        self._usage_lock = threading.Lock()
        self._reported_usage: list[dict[str, int]] = []

    @property
    def reported_usage(self) -> list[dict[str, int]]:
        """The `usage` of every chat completion answered so far (prompt and completion tokens)."""
        with self._usage_lock:
            return list(self._reported_usage)

    def clear(self) -> None:
        super().clear()
        with self._usage_lock:
            self._reported_usage.clear()

    @property
    def url(self) -> str:
        """The SDK's base URL, e.g. http://127.0.0.1:PORT/v1 (OPENAI_BASE_URL)."""
        return f"http://{self.host}:{self.port}/v1"

    def respond(self, request: RecordedRequest, fault: Fault | None) -> Reply:
        if fault is not None and fault.kind == "status":
            return _status_fault_reply(fault)
        if fault is not None and fault.kind == "malformed":
            return Reply(200, b'{"id": "chatcmpl-', JSON_CONTENT_TYPE, _common_headers())

        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/v1/models"):
            return _ok(_models())
        if route not in (("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings")):
            return _error(404, f"Invalid URL ({request.method} {request.path})")
        try:
            body = request.json
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str):
            return _error(400, "you must provide a model parameter", param="model")
        if route[1] == "/v1/embeddings":
            return _embeddings(body)
        content = fault.text if fault is not None else None
        reply = _chat_completion(body, content)
        if reply.status == 200:
            usage = json.loads(reply.body)["usage"]
            with self._usage_lock:
                self._reported_usage.append(
                    {key: usage[key] for key in ("prompt_tokens", "completion_tokens")}
                )
        return reply


def _chat_completion(body: dict[str, Any], content: str | None) -> Reply:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if body.get("stream"):
        return _error(400, "This fake does not stream; send stream=false.", param="stream")
    if content is None:
        content = summarise(paper_text(messages))
    prompt_tokens = _count_tokens(json.dumps(messages))
    completion_tokens = _count_tokens(content)
    return _ok(
        {
            "id": "chatcmpl-" + _random_id(29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_" + hashlib.sha1(body["model"].encode()).hexdigest()[:10],
        }
    )


def paper_text(messages: Sequence[Any]) -> str:
    """The text of the paper to summarise, found in the last user message of `messages`."""
    user_messages = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user_messages:
        return ""
    text = _message_text(user_messages[-1].get("content"))
    tagged = re.search(r"<abstract>(.*?)</abstract>", text, re.DOTALL | re.IGNORECASE)
    if tagged:
        return tagged[1].strip()
    return _longest_json_string(text) or text.strip()


def summarise(text: str) -> str:
    """ "Summary: " and the first two sentences of `text`, whitespace collapsed."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return "Summary: " + " ".join(sentences[:2])


def _message_text(content: object) -> str:
    # Content is a string, or a list of parts such as {"type": "text", "text": ...}.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _longest_json_string(text: str) -> str | None:
    """The longest string value in the first JSON object of `text`, which may hold prose too."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            strings = list(_strings_in(value))
            return max(strings, key=len) if strings else None
    return None


def _strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings_in(item)]
    return []


def _embeddings(body: dict[str, Any]) -> Reply:
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return _error(400, "'input' must be a string or a non-empty array", param="input")
    dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or dimensions < 1:
        return _error(400, "'dimensions' must be a positive integer", param="dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        vector = embedding_of(json.dumps(item) if not isinstance(item, str) else item, dimensions)
        encoded: object = vector
        if as_base64:
            # Little-endian float32, the layout the SDK decodes.
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_count_tokens(str(item)) for item in inputs)
    return _ok(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def embedding_of(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's embedding of `text`: a unit vector that depends only on the text."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        # Each 4-byte word becomes a value in [-1, 1].
        raw += [(word / 0xFFFFFFFF) * 2 - 1 for word in struct.unpack("<8I", digest)]
        counter += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _models() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for model in MODELS
        ],
    }


def _status_fault_reply(fault: Fault) -> Reply:
    message, error_type = _ERRORS.get(fault.status_code, ("Something went wrong.", "server_error"))
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = retry_after_header(fault.retry_after)
        headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
    code = "rate_limit_exceeded" if fault.status_code == 429 else None
    return _error(fault.status_code, message, error_type=error_type, code=code, headers=headers)


def _ok(payload: dict[str, Any]) -> Reply:
    return Reply(200, json.dumps(payload).encode(), JSON_CONTENT_TYPE, _common_headers())


def _error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    payload = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    body = json.dumps(payload).encode()
    return Reply(status, body, JSON_CONTENT_TYPE, {**_common_headers(), **(headers or {})})


def _common_headers() -> dict[str, str]:
    # The SDK exposes x-request-id as `_request_id` and in its error messages.
    return {"x-request-id": "req_" + secrets.token_hex(16)}


def _random_id(length: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _count_tokens(text: str) -> int:
    # About four characters a token in English, OpenAI's own rule of thumb.
    return max(1, math.ceil(len(text) / 4))


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, printing the base URL first."""
    serve_command_line(
        FakeOpenAIServer, "A local OpenAI-compatible API with deterministic answers.", argv
    )


if __name__ == "__main__":
    main()
