"""TLS for Redis from a `rediss://` URL, for Celery's broker and result backend.

A `rediss://` URL names its verification in the query string
(`?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.crt`). redis-py and Celery's
result backend read that query; kombu's broker transport does not, and without
`broker_use_ssl` it connects *without verifying the certificate* (a warning is
all it says). `redis_ssl_options` turns the query into the options both need;
the certificate is verified unless the URL says otherwise.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
