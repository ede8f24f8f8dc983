"""The Redis broker as research-arm uses it: TLS options from the URL, and kombu's transport
with one fix.

TLS. A `rediss://` URL names its verification in the query string
(`?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.crt`). redis-py and Celery's
result backend read that query; kombu's broker transport does not, and without
`broker_use_ssl` it connects *without verifying the certificate* (a warning is
all it says). `redis_ssl_options` turns the query into the options both need;
certificate verification is required unless the URL says otherwise.

Transport. When the broker connection drops with tasks running, kombu detaches
the transport from its channels while an acknowledgement or a restore may still
go through one of them; the channel then fails with AttributeError, which Celery
treats as an unrecoverable error and the worker exits. Here such a channel fails
like a lost connection instead: the acknowledgement is logged as not done and the
message, still in Redis's `unacked` hash, comes back after the visibility timeout.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from kombu.transport import redis as kombu_redis

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def redis_ssl_options(url: str) -> dict[str, Any] | None:
    """kombu's and Celery's SSL options for a `rediss://` URL; None for `redis://`.

    Raises:
        ValueError: ssl_cert_reqs names no known mode.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    mode = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    if mode not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be required, optional or none, not {mode!r}")
    options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[mode]}
    options.update({name: query[name] for name in _FILE_OPTIONS if name in query})
    return options


class Channel(kombu_redis.Channel):
    """kombu's Redis channel; used after its connection closed, it raises ConnectionError."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel is closed")
        # kombu's own method carries no annotations.
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above (`broker_transport`)."""

    Channel = Channel
