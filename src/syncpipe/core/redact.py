"""Keep secrets out of logs, reports and error messages."""

from __future__ import annotations

import re
import threading

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
_KV_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|sslpassword)\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)",
    re.IGNORECASE,
)
MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value (a password) so every later redaction masks it verbatim."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with passwords in URLs, ``password=`` pairs and known secrets masked."""
    if not text:
        return text
    out = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    out = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, out)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        out = out.replace(secret, MASK)
    return out


def redact_value(value: object) -> object:
    """Redact strings inside nested JSON-like values (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
