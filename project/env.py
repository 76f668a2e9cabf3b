"""Typed readers of environment variables that fail loudly.

django-environ's `env.bool` turns any value it does not know ("ture", "yes please") into False,
and `env.int` fails with a bare ValueError that does not name the variable. These name the
variable and what it must be, as ImproperlyConfigured, before anything starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network

from django.core.exceptions import ImproperlyConfigured

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")


def parse_float(name: str, raw: str, *, minimum: float | None = None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def parse_int(name: str, raw: str, *, minimum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def parse_networks(name: str, raw: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """A comma list of addresses or networks ("127.0.0.1, 10.0.0.0/8, ::1"); empty = none."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be a comma list of IP addresses or networks (10.0.0.0/8), "
                f"got {item!r}") from None
    return tuple(networks)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None or raw.strip() == "" else parse_bool(name, raw)


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    return default if raw is None or raw.strip() == "" else parse_int(name, raw, minimum=minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return parse_float(name, raw, minimum=minimum)


_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_BOOL_OPTIONS = frozenset({"USE_TLS", "USE_SSL", "FAIL_SILENTLY", "DEBUG_API_REQUESTS"})


def _provider_option(variable: str, option: str, raw: str) -> object:
    if option.endswith("TIMEOUT"):
        return parse_float(variable, raw, minimum=0)
    if option == "PORT":
        return parse_int(variable, raw, minimum=1)
    if option in _BOOL_OPTIONS or option.startswith("IGNORE_"):
        return parse_bool(variable, raw)
    return raw


def parse_providers(environ: Mapping[str, str]) -> list[dict[str, object]]:
    """EMAIL_BACKENDS=primary,secondary: the providers, in order of preference.

    Each NAME needs EMAIL_<NAME>_BACKEND (a dotted backend path); every other EMAIL_<NAME>_<OPTION>
    variable is passed to that backend as the keyword argument <option> (lower case), e.g.
    EMAIL_PRIMARY_SERVER_TOKEN -> server_token=, EMAIL_SECONDARY_API_URL -> api_url=.
    Empty or unset: one provider, Django's EMAIL_BACKEND with its usual settings.
    """
    raw = environ.get("EMAIL_BACKENDS", "").strip()
    if not raw:
        return []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    providers: list[dict[str, object]] = []
    for name in names:
        if not _PROVIDER_NAME.match(name):
            raise ImproperlyConfigured(
                f"EMAIL_BACKENDS: {name!r} is not a provider name (lower-case letters, digits "
                "and _, starting with a letter)")
        if any(p["NAME"] == name for p in providers):
            raise ImproperlyConfigured(f"EMAIL_BACKENDS names {name!r} twice")
        prefix = f"EMAIL_{name.upper()}_"
        backend = environ.get(f"{prefix}BACKEND", "").strip()
        if not backend:
            raise ImproperlyConfigured(
                f"EMAIL_BACKENDS names {name!r} but {prefix}BACKEND (its backend's dotted path) "
                "is not set")
        options = {
            key.removeprefix(prefix).lower(): _provider_option(key, key.removeprefix(prefix), value)
            for key, value in environ.items()
            if key.startswith(prefix) and key != f"{prefix}BACKEND" and len(key) > len(prefix)
        }
        providers.append({"NAME": name, "BACKEND": backend, "OPTIONS": options})
    return providers
