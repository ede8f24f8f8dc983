"""The running research-arm's version (provenance, health and the capability manifest).

A module of its own so that the health sidecar learns the version without
importing the pipeline's clients.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def arm_version() -> str:
    """The installed package's version, or a marker when running from a bare checkout."""
    try:
        return version("research-arm")
    except PackageNotFoundError:
        return "0.0.0+unknown"
