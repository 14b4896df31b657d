"""Settings: SYNCPIPE_* environment variables, then .env.<env>, then .env, then defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from syncpipe.core.dsn import parse_dsn, password_of
from syncpipe.core.errors import ConfigError
from syncpipe.core.redact import redact, register_secret
from syncpipe.core.timeouts import MAX_TIMEOUT_MS

DEFAULT_ENV = "dev"
ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: CSV file name pattern -> target table; a new source is one more entry (SYNCPIPE_CSV_SOURCES).
DEFAULT_CSV_SOURCES: dict[str, str] = {
    "new_agents*.csv": "public.new_agents",
    "raw_company_info*.csv": "bronze.company_info_raw",
}


#: PostgreSQL's largest work_mem, in kB (64-bit servers).
_MAX_WORK_MEM_KB = 2_147_483_647
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


class Settings(BaseSettings):
    """Every setting syncpipe reads. Field ``x`` is read from ``SYNCPIPE_X``."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCPIPE_",
        env_file=None,
        # (an empty value is no value: .env.example's lines uncommented keep the defaults)
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    env: str = DEFAULT_ENV
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SYNCPIPE_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    embedded_data_dir: Path = Path(".syncpipe/pgdata")

    # Connection pool and sessions.
    pool_min_size: int = Field(default=1, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    # (seconds; the connection's at most PostgreSQL's largest timeout, about 24.8 days; the
    # statement's and lock wait's "inf" is that largest: syncpipe.core.timeouts)
    connect_timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_MS // 1000)
    statement_timeout: float = Field(default=0.0, ge=0)
    lock_timeout: float = Field(default=30.0, ge=0)
    application_name: str = "syncpipe"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        None
    )

    # Files and folders.
    sql_dir: Path | None = None
    data_dir: Path = Path("data")
    logs_dir: Path = Path("logs")
    log_format: Literal["auto", "console", "json"] = "auto"

    # Deploy/verify.
    exposed_schemas: list[str] = Field(default_factory=lambda: ["public", "bronze"])
    authenticated_read_tables: list[str] = Field(
        default_factory=lambda: [
            "public.new_unified_agents",
            "public.unified_agent_sources",
            "public.merge_review_queue",
        ]
    )

    # Functions (schema.name) that anon and authenticated may execute besides Supabase's auth
    # helpers; verify fails on any other (lint api_role_privilege).
    api_allowed_functions: list[str] = Field(default_factory=list)

    # Load.
    csv_sources: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CSV_SOURCES))
    # Rows per batch: one transaction each, so a load resumes after its last committed batch.
    load_batch_rows: int = Field(default=20_000, ge=1)
    load_jobs: int = Field(default=2, ge=1)
    # Parallel COPY streams (connections) per file.
    load_streams: int = Field(default=2, ge=1)

    # Merge (DESIGN.md, Matching): links above the threshold merge automatically; the others,
    # and every fuzzy name pair, go to the review queue.
    merge_auto_threshold: int = Field(default=70, ge=0, le=100)
    merge_confidence_email: int = Field(default=100, ge=0, le=100)
    merge_confidence_phone: int = Field(default=90, ge=0, le=100)
    merge_confidence_name_team: int = Field(default=80, ge=0, le=100)
    merge_confidence_fuzzy_name: int = Field(default=60, ge=0, le=100)
    merge_fuzzy_similarity: float = Field(default=0.6, gt=0, le=1)
    # Source records per merge transaction (0: all pending records in one transaction).
    merge_batch_records: int = Field(default=0, ge=0)
    merge_work_mem: str = "128MB"
    # SQL functions run after the merge batch, in order, in the same transaction:
    # each takes no argument, or one jsonb (the merge's counts), and may return jsonb.
    pipeline_steps: list[str] = Field(default_factory=list)

    @field_validator("pipeline_steps", "api_allowed_functions")
    @classmethod
    def _check_steps(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _FUNCTION_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a SQL function name (function or schema.function)"
                )
        return value

    @field_validator("api_allowed_functions")
    @classmethod
    def _as_sql_reads_them(cls, value: list[str]) -> list[str]:
        # (as SQL reads an unquoted name: folded to lower case, and a bare one in public; a
        # bare or upper-case name matched no function, and verify failed on the one allowed)
        return [name.lower() if "." in name else f"public.{name.lower()}" for name in value]

    @field_validator("sql_dir", "data_dir", "logs_dir", "embedded_data_dir", mode="before")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        # (quoted spaces are no empty value: they named a folder of spaces)
        if isinstance(value, str) and value and not value.strip():
            raise ValueError("is blank: give a folder, or leave the setting out")
        return value

    @field_validator("logs_dir", "embedded_data_dir")
    @classmethod
    def _a_folder_if_there(cls, value: Path) -> Path:
        # (a file there failed only when first written to: a full run after all its work,
        # the embedded server with initdb's output)
        for path in (value, *value.parents):  # (the nearest that exists: "afile/logs" too)
            if path.exists():
                if not path.is_dir():
                    raise ValueError(f"{path} is a file, not a folder")
                break
        return value

    @field_validator("merge_work_mem")
    @classmethod
    def _check_work_mem(cls, value: str) -> str:
        match = re.fullmatch(r"(\d+)\s*(kB|MB|GB)", value)
        if match is None:  # (pydantic's own message quoted the regular expression)
            raise ValueError("write a whole number and kB, MB or GB, as PostgreSQL does: 128MB")
        number, unit = match.groups()
        kilobytes = int(number) * {"kB": 1, "MB": 1024, "GB": 1024 * 1024}[unit]
        if not 64 <= kilobytes <= _MAX_WORK_MEM_KB:
            raise ValueError("PostgreSQL's work_mem is 64kB to 2147483647kB (about 2 TB)")
        return value

    @field_validator("connect_timeout", "statement_timeout", "lock_timeout")
    @classmethod
    def _no_negative_zero(cls, value: float) -> float:
        return value + 0.0  # "-0" is 0 (and says "0 s" in messages)

    @field_validator("database_url", "sslmode", mode="before")
    @classmethod
    def _empty_dsn_is_none(cls, value: Any) -> Any:
        # (empty, as .env.example's line uncommented: not set)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_dsn(value.get_secret_value())  # raises ValueError with a redacted reason
        return value

    @model_validator(mode="after")
    def _check_pool(self) -> Settings:
        if self.pool_max_size < self.pool_min_size:
            raise ValueError(
                f"pool_max_size ({self.pool_max_size}) is smaller than pool_min_size "
                f"({self.pool_min_size})"
            )
        return self

    @property
    def dsn(self) -> str | None:
        """The configured connection string, or None for the embedded server."""
        return self.database_url.get_secret_value() if self.database_url else None


def env_var_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    if field in ("database_url", "SYNCPIPE_DATABASE_URL", "DATABASE_URL"):
        return "SYNCPIPE_DATABASE_URL"
    return "SYNCPIPE_" + field.upper()


def _file_entries(path: Path) -> dict[str, tuple[str, int]]:
    """A dotenv file's NAME=value pairs as {NAME: (value, line)}, names upper-cased; a line
    that is no such pair is a ConfigError naming the file and the line (python-dotenv would
    skip it with a warning)."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    lines: dict[str, int] = {}
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            # (a binding starts with the blank lines before it)
            text = binding.original.string
            line = binding.original.line + text[: len(text) - len(text.lstrip())].count("\n")
            if binding.error:
                raise ConfigError(
                    f"{path}, line {line}, is not a NAME=value line (nor a comment): write "
                    f"it as NAME=value."
                )
            if binding.key is not None:
                lines[binding.key.upper()] = line
    # (the values as python-dotenv reads them for the settings: ${VAR} expanded)
    values = {key.upper(): value or "" for key, value in dotenv_values(path).items()}
    return {key: (values.get(key, ""), line) for key, line in lines.items()}


#: The dotenv files read, each parsed once (:func:`_file_entries`), lowest precedence first.
DotenvFiles = dict[Path, dict[str, tuple[str, int]]]


def _sources_of(name: str, files: DotenvFiles) -> list[tuple[str, str]]:
    """Where ``name`` is set, as (place, value), the one that counts first: the environment,
    then .env.<env>, then .env (with the line). Empty values are none."""
    found = [
        ("the environment", value)
        for key, value in os.environ.items()
        if key.upper() == name and value.strip()
    ]
    for path, entries in reversed(files.items()):
        value, line = entries.get(name, ("", 0))
        if value.strip():
            found.append((f"{path}, line {line}", value))
    return found


def _resolve_dsn(files: DotenvFiles) -> tuple[str | None, str]:
    """The database URL and where it was found, in the settings' precedence: the
    SYNCPIPE_DATABASE_URL variable, then .env.<env>, then .env (either name in a file), and
    last a DATABASE_URL variable, the generic one a host sets for every process. Empty values
    count as unset."""
    environ = {key.upper(): value for key, value in os.environ.items()}
    if environ.get("SYNCPIPE_DATABASE_URL", "").strip():
        return environ["SYNCPIPE_DATABASE_URL"], "SYNCPIPE_DATABASE_URL"
    for path, entries in reversed(files.items()):
        for name in ("SYNCPIPE_DATABASE_URL", "DATABASE_URL"):
            value = entries.get(name, ("", 0))[0]
            if value.strip():
                return value, f"{name} (in {path})"
    if environ.get("DATABASE_URL", "").strip():
        return environ["DATABASE_URL"], "DATABASE_URL"
    return None, "SYNCPIPE_DATABASE_URL"


def env_files(env: str, base: Path | None = None) -> tuple[Path, ...]:
    """The dotenv files for ``env`` in precedence order, lowest first (``.env``, ``.env.<env>``)."""
    root = base or Path.cwd()
    return (root / ".env", root / f".env.{env}")


def known_envs(base: Path | None = None) -> list[str]:
    """Environment names that have a ``.env.<name>`` file, plus the default."""
    root = base or Path.cwd()
    names = {p.name[len(".env.") :] for p in root.glob(".env.*") if p.is_file()}
    names.discard("example")
    return sorted(names | {DEFAULT_ENV})


def load_settings(
    env: str | None = None, *, base: Path | None = None, **overrides: Any
) -> Settings:
    """Build the settings for ``env``; every problem becomes one ConfigError sentence. With
    no ``env`` (no --env, no SYNCPIPE_ENV variable), .env's SYNCPIPE_ENV picks it (it was
    ignored, silently)."""
    parsed: DotenvFiles = {}
    dotenv = (base or Path.cwd()) / ".env"
    if not env and dotenv.is_file():
        try:
            parsed[dotenv] = _file_entries(dotenv)
        except (OSError, UnicodeDecodeError):
            pass  # (said below, where every file is read)
        else:
            env = parsed[dotenv].get("SYNCPIPE_ENV", ("", 0))[0].strip() or None
    env = env or DEFAULT_ENV
    if not ENV_NAME.match(env):
        raise ConfigError(
            f"--env {env!r} is not a valid environment name (letters, digits, _ . -)."
        )
    files = env_files(env, base)
    if env != DEFAULT_ENV and not files[1].is_file():
        raise ConfigError(
            f"Unknown environment {env!r}: there is no {files[1].name} file in {files[1].parent} "
            f"(known environments: {', '.join(known_envs(base))}); create it, e.g. from "
            f".env.example with the environment's SYNCPIPE_DATABASE_URL."
        )
    for path in files:
        if path.is_file() and path not in parsed:
            try:
                parsed[path] = _file_entries(path)
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}).") from None
            except OSError as exc:
                raise ConfigError(f"{path} cannot be read: {exc.strerror}.") from None
    parsed = {path: parsed[path] for path in files if path in parsed}  # (in precedence order)
    present = tuple(parsed)
    dsn, dsn_source = _resolve_dsn(parsed)
    if "database_url" not in overrides:
        overrides["database_url"] = dsn
    try:
        settings = Settings(
            _env_file=tuple(str(p) for p in present),  # type: ignore[call-arg]
            env=env,
            **overrides,
        )
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, dsn_source, parsed)) from None
    except SettingsError as exc:
        raise ConfigError(_describe_settings_error(exc, parsed)) from None
    warn_unknown_variables(parsed)
    register_secret(password_of(settings.dsn))
    return settings


def _describe_validation_error(
    exc: ValidationError,
    dsn_source: str = "SYNCPIPE_DATABASE_URL",
    files: DotenvFiles | None = None,
) -> str:
    err = exc.errors()[0]
    loc = [str(part) for part in err.get("loc", ()) if not isinstance(part, int)]
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ")
    if not loc:
        # A model-level check such as pool_max_size < pool_min_size names its fields itself.
        fields = re.findall(r"\b(pool_\w+)\b", msg)
        names = " / ".join(dict.fromkeys(env_var_name(f) for f in fields)) or "A setting"
        return redact(f"Setting {names} is invalid: {msg}.")
    field = loc[0]
    secret = field in ("database_url", "SYNCPIPE_DATABASE_URL", "DATABASE_URL")
    name = dsn_source if secret else env_var_name(field)
    given = err.get("input")
    shown = "" if secret or isinstance(given, dict) else f" (got {given!r})"
    places = [] if secret else _sources_of(name, files or {})
    where = f" (in {places[0][0]})" if places and places[0][0] != "the environment" else ""
    return redact(f"Setting {name}{where} is invalid{shown}: {msg}.")


#: Names of settings without their prefix that a .env shared with other tools holds for
#: those tools (ENV=production): not warned about.
_SHARED_NAMES = frozenset(
    {
        "ENV",
        "LOG_FORMAT",
        "SSLMODE",
        "DATA_DIR",
        "LOGS_DIR",
        "SQL_DIR",
        "APPLICATION_NAME",
        "CONNECT_TIMEOUT",
        "STATEMENT_TIMEOUT",
        "LOCK_TIMEOUT",
    }
)

#: SYNCPIPE_* variables that are not settings but are read on purpose (tests, benchmarks, review).
OTHER_VARIABLES = frozenset(
    {
        "SYNCPIPE_REVIEWER",
        "SYNCPIPE_TEST_DATABASE_URL",
        "SYNCPIPE_BENCH_DATABASE_URL",
        "SYNCPIPE_REQUIRE_CHROMIUM",
    }
)


def known_variables() -> list[str]:
    """Every SYNCPIPE_* name syncpipe reads: one per setting, plus :data:`OTHER_VARIABLES`."""
    return sorted({env_var_name(name) for name in Settings.model_fields} | OTHER_VARIABLES)


def unknown_variables(files: DotenvFiles | None = None) -> list[tuple[str, str, str | None]]:
    """``(name, where, closest known name)`` for each SYNCPIPE_* name syncpipe does not read,
    and for each name in a dotenv file that is a setting's name misspelt or without its prefix
    (``POOL_MAX_SIZE``, ``DATABSE_URL``; a file's other names may be another tool's)."""
    import difflib

    known = known_variables()
    found: list[tuple[str, str]] = [
        (key, "the environment") for key in os.environ if key.upper().startswith("SYNCPIPE_")
    ]
    unknown: list[tuple[str, str, str | None]] = []
    for path, entries in (files or {}).items():
        for key in entries:
            if key.startswith("SYNCPIPE_"):
                found.append((key, str(path)))
            elif key == "DATABASE_URL":
                continue
            elif "SYNCPIPE_" + key in known and key not in _SHARED_NAMES:
                unknown.append((key, str(path), "SYNCPIPE_" + key))
            elif difflib.get_close_matches(key, ["DATABASE_URL"], n=1, cutoff=0.85):
                unknown.append((key, str(path), "SYNCPIPE_DATABASE_URL"))
    for key, where in found:
        if key.upper() in known:
            continue
        close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
        unknown.append((key, where, close[0] if close else None))
    return unknown


def warn_unknown_variables(files: DotenvFiles | None = None) -> None:
    """Log a warning for every SYNCPIPE_* name that is no setting, naming the closest one."""
    from syncpipe.logs import get_logger

    log = get_logger(__name__)
    for key, where, close in unknown_variables(files):
        hint = f"; did you mean {close}?" if close else ""
        log.warning(
            "settings.unknown_variable",
            variable=key,
            source=where,
            did_you_mean=close,
            message=f"{key} (in {where}) is not a syncpipe setting and is ignored{hint}",
        )


def _describe_settings_error(exc: SettingsError, files: DotenvFiles) -> str:
    """pydantic-settings could not decode a value (bad JSON in a list or map setting)."""
    match = re.search(r'field "(\w+)"', str(exc))
    if match is None:
        return redact(f"A setting could not be read: {exc}.")
    field = match.group(1)
    name = env_var_name(field)
    kind, wanted = ("a JSON object", dict) if field == "csv_sources" else ("a JSON list", list)
    # (every place is decoded, the overridden ones too: the one at fault is named)
    places = _sources_of(name, files)
    where = next(
        (place for place, value in places if not _is_json(value, wanted)),
        places[0][0] if places else "the environment",
    )
    return redact(f"Setting {name} (in {where}) is not valid JSON: it must be {kind}.")


def _is_json(text: str, wanted: type) -> bool:
    import json

    try:
        return isinstance(json.loads(text), wanted)
    except ValueError:
        return False
