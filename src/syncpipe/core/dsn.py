"""Parse and describe connection strings without ever printing the password."""

from __future__ import annotations

from dataclasses import dataclass

from syncpipe.core.redact import redact


def parse_dsn(dsn: str) -> dict[str, str]:
    """Split a URL or key=value connection string; ValueError (redacted) if it is malformed."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    text = dsn.strip()
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in {"postgres", "postgresql"}:
            raise ValueError(
                f"connection URLs must start with postgresql:// or postgres://, not {scheme}://"
            )
        _check_userinfo(text.split("://", 1)[1])
    elif "=" not in text:
        raise ValueError("it is neither a postgresql:// URL nor key=value pairs")
    try:
        params = conninfo_to_dict(text)
    except psycopg.ProgrammingError as exc:
        raise ValueError(redact(str(exc).strip().rstrip("."))) from None
    port = str(params.get("port") or "")
    for part in port.split(","):
        if part and not part.isdigit():
            raise ValueError(f"the port {part!r} is not a number")
    for key, allowed in _CHOICES.items():
        value = params.get(key)
        if value is not None and str(value) not in allowed:
            raise ValueError(f"{key}={value!s} is not one of {', '.join(allowed)}")
    return {k: str(v) for k, v in params.items() if v is not None}


def _check_userinfo(rest: str) -> None:
    """ValueError when libpq would cut a URL's user name or password short. libpq ends them
    at the first "@" (or finds none past a "/"): the rest of a password holding an "@" or a
    "/" of its own became the host name, the port or the database, and was printed as one."""
    at = rest.find("@")
    if at < 0:
        return
    slash, query = rest.find("/"), rest.find("?")
    if 0 <= slash < at and not 0 <= query < slash:
        if query < 0 or at < query:  # (an "@" in the query string is no user name's)
            raise ValueError(
                'the URL has a "/" before its "@": write a "/" in the user name or password '
                'as %2F, and an "@" as %40'
            )
        return
    host = rest[at + 1 :].split("/", 1)[0].split("?", 1)[0]
    if "@" in host:
        raise ValueError(
            'the URL has more than one "@" before its host: write an "@" in the user name or '
            "password as %40"
        )


#: Connection parameters whose values libpq checks only when connecting: checked here so a
#: typo is a configuration error (exit 2), not a failed connection (exit 3).
_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
}


def password_of(dsn: str | None) -> str | None:
    """The password in ``dsn``, if any (so that redaction can mask it verbatim)."""
    if not dsn:
        return None
    return parse_dsn(dsn).get("password")


@dataclass(frozen=True)
class DsnInfo:
    """Where a connection string points, safe to print."""

    host: str
    port: int
    dbname: str
    user: str

    @property
    def target(self) -> str:
        """``host:port/dbname``: the phrase error messages use."""
        return f"{self.host}:{self.port}/{self.dbname}"


def describe_dsn(dsn: str) -> DsnInfo:
    """Host, port, database and user of ``dsn`` with libpq's defaults filled in."""
    import getpass
    import os

    params = parse_dsn(dsn)
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port_text = (params.get("port") or os.environ.get("PGPORT") or "5432").split(",")[0]
    user = params.get("user") or os.environ.get("PGUSER") or getpass.getuser()
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return DsnInfo(host=host.split(",")[0], port=int(port_text), dbname=dbname, user=user)
