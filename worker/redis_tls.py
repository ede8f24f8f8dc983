"""TLS for Redis from a `rediss://` URL, for Celery's broker and result backend.

A `rediss://` URL says how to check the server in its query string
(`?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.crt`). Without `ssl_cert_reqs`
the two disagree: kombu (the broker) connects with certificate checks off, and
Celery's result backend refuses to start. `redis_ssl_options` reads the query
into `broker_use_ssl` and `redis_backend_use_ssl`, so both check the certificate
unless the URL says `ssl_cert_reqs=none`.
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
