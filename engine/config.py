"""The shared shape of every settings group: pydantic models read from the flat environment.

Each package declares the group it consumes (engine/model/config.py, engine/chat/config.py, …) next
to its code; a field's alias is its environment key, and its default is written only there.
`bot/settings.py` joins the groups into one tree. Building a group in code (tests, benches)
never reads the environment: only `from_env` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the key (never a secret)."""


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _id_set(value: object) -> object:
    """ "1, 2 3" (commas, semicolons or spaces) → {"1", "2", "3"}; pydantic makes them ints."""
    if isinstance(value, str):
        return {part for part in value.replace(";", ",").replace(",", " ").split() if part}
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Not echoed: a proxy URL may carry a password.
        raise ValueError("must be an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
    return value


Lowered = BeforeValidator(_lower)  # Annotated[Literal[...], Lowered]: case-insensitive choices
IdSet = Annotated[frozenset[Annotated[int, Field(gt=0)]], BeforeValidator(_id_set)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]  # every URL setting, as written


def clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """Values stripped; a blank value means "use the default", as if the key were unset."""
    return {key: value.strip() for key, value in env.items() if value and value.strip()}


class ConfigGroup(BaseModel):
    """A group of settings. Field aliases are environment keys; unknown keys are ignored."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # A group that exists only when this key is set (a platform's token), else None.
    enabled_by: ClassVar[str | None] = None
    # Keys whose blank value means something (not "the default"), e.g. no triggers at all.
    blank_is_a_value: ClassVar[frozenset[str]] = frozenset()
    # Keys read by a validator of the group rather than by one field.
    derived_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self | None:
        """The group from a flat environment mapping; None when `enabled_by` is unset.
        Raises SettingsError naming the key (and the allowed values) when a value is bad."""
        blanks = {key: "" for key in cls.blank_is_a_value if key in env and not env[key].strip()}
        values = clean_env(env) | blanks
        if cls.enabled_by is not None and cls.enabled_by not in values:
            return None
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise settings_error(error, cls.secret_keys()) from None

    @classmethod
    def env_keys(cls) -> set[str]:
        """Every environment key this group reads."""
        fields = {str(field.alias) for field in cls.model_fields.values() if field.alias}
        return fields | cls.derived_keys

    @classmethod
    def secret_keys(cls) -> set[str]:
        """Keys whose values are never shown (their fields are left out of the repr)."""
        return {str(f.alias) for f in cls.model_fields.values() if f.alias and not f.repr}


_USERINFO = re.compile(r"//[^/@\s]*@")


def settings_error(error: ValidationError, secrets: Iterable[str] = ()) -> SettingsError:
    """One line per bad value: the key, what is wrong, and what was given (unless secret)."""
    hidden = set(secrets)
    lines = []
    for problem in error.errors(include_url=False):
        keys = [str(part) for part in problem["loc"] if isinstance(part, str) and part.isupper()]
        message = str(problem["msg"]).removeprefix("Value error, ")
        if not keys:  # a rule across keys: its message names them
            lines.append(message)
            continue
        given = problem.get("input")
        if isinstance(given, str):
            given = _USERINFO.sub("//***@", given)  # a URL's user and password are secrets too
        if keys[-1] not in hidden and isinstance(given, str | int | float):
            message += f", got {given!r}"
        lines.append(f"{keys[-1]}: {message}")
    return SettingsError("; ".join(lines))
