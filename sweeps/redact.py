"""Keep passwords out of what a sweep logs: MLflow params and tags, printed commands, errors.

A storage or tracking URL may carry ``user:password@``; the sweep still needs the full URL to
connect (it stays in ``sweep.json``, written readable by the owner only), but everything that
leaves the process shows ``***`` in its place.
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SECRET_KEYS = ("mlflow_uri", "optuna_storage", "address")


def redact_url(url: str | None) -> str | None:
    """``url`` with any password replaced by ``***`` (user name and the rest kept)."""
    if not url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact_settings(values: dict) -> dict:
    """A copy of a settings dict fit for logging: URL-valued entries redacted."""
    return {k: (redact_url(v) if k in SECRET_KEYS and isinstance(v, str) else v)
            for k, v in values.items()}
