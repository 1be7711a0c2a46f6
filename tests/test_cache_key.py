"""The cache key's decision table and the key itself (DESIGN.md, "Cache").

`test_every_request_field_has_a_decision` fails when a field is added to the request (or to the
`orq` block) without deciding whether it belongs in the key — TensorZero's destructured key,
in Python.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from proxy.api.completions import SURFACE, to_canonical
from proxy.api.decode import decode_request
from proxy.api.request import (
    GENERATION_DEFAULTS,
    GENERATION_FIELDS,
    CompletionRequest,
    Orq,
)
from proxy.cache.key import CANONICAL_DECISIONS, FIELD_DECISIONS, KEY
from proxy.config import parse_config
from proxy.core.model import REQUEST_FIELDS
from proxy.pipeline.auth import ApiKey
from proxy.pipeline.cache import key_of as cache_key
from proxy.pipeline.call import Call
from proxy.pipeline.routing import TargetResolver, resolve_route

CONFIG = parse_config("""
providers:
  emu: {type: openai, base_url: "http://127.0.0.1:9/v1"}
  emu2: {type: openai, base_url: "http://127.0.0.1:9/v1"}
auth: {keys: [{name: t, key: "k-cache-key-test"}]}
""")
RESOLVE = TargetResolver(CONFIG)


def request_fields() -> set[str]:
    # `orq` is a container: it is decided field by field, as `orq.<name>`.
    top = set(CompletionRequest.__struct_fields__) - {"orq"}
    return top | {f"orq.{name}" for name in Orq.__struct_fields__}


# -- the decision table ---------------------------------------------------------------------------------

def test_every_request_field_has_a_decision():
    undecided = request_fields() - set(FIELD_DECISIONS)
    assert not undecided, f"request fields with no cache-key decision in FIELD_DECISIONS: {sorted(undecided)}"


def test_every_chat_field_has_a_decision():
    from proxy.api.chat_request import ChatCompletionRequest
    from proxy.api.request import SamplingRequest
    from proxy.cache.key import CHAT_FIELD_DECISIONS

    own = set(ChatCompletionRequest.__struct_fields__) - set(SamplingRequest.__struct_fields__)
    assert own == set(CHAT_FIELD_DECISIONS), "decide every chat field (and drop decisions for removed ones)"
    shared = set(SamplingRequest.__struct_fields__) - {"orq"}
    assert shared <= set(FIELD_DECISIONS), "the fields chat shares with completions are decided there"


def test_every_canonical_field_has_a_decision():
    assert set(CANONICAL_DECISIONS) == set(REQUEST_FIELDS), "decide every canonical request field"


def test_every_decision_names_a_real_field():
    stale = set(FIELD_DECISIONS) - request_fields()
    assert not stale, f"FIELD_DECISIONS entries that name no request field: {sorted(stale)}"


def test_orq_itself_is_a_real_field_decided_through_its_members():
    assert "orq" in CompletionRequest.__struct_fields__
    assert Orq.__struct_fields__, "the orq block has members to decide"


def test_every_decision_is_key_or_an_exclusion_with_a_reason():
    for name, decision in FIELD_DECISIONS.items():
        if decision == KEY:
            continue
        assert decision.startswith("excluded: ") and len(decision) > len("excluded: ") + 5, (name, decision)


def test_the_decisions_match_design_md():
    excluded = {name for name, decision in FIELD_DECISIONS.items() if decision != KEY}
    # DESIGN.md: excluded are name, user, identity, contact, thread, retry, timeout, cache.ttl, stream.
    for name in ("name", "user", "orq.identity", "orq.contact", "orq.thread", "retry", "timeout", "stream",
                 "cache", "orq.name", "orq.retry", "orq.timeout", "orq.cache"):
        assert name in excluded, name
    # ... and in: the routing spec, the final prompt and every generation parameter.
    for name in ("model", "prompt", "fallbacks", "load_balancer", "orq.fallbacks", "orq.load_balancer",
                 "orq.prompt", "orq.inputs", "thinking", *GENERATION_FIELDS):
        assert FIELD_DECISIONS[name] == KEY, name


def test_every_generation_field_has_a_spec_default():
    assert set(GENERATION_DEFAULTS) == set(GENERATION_FIELDS)


def test_the_key_module_imports_on_its_own():
    done = subprocess.run([sys.executable, "-c", "import proxy.cache.key"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# -- the key ------------------------------------------------------------------------------------------

def api_key(name: str) -> ApiKey:
    return ApiKey(name, hashlib.sha256(name.encode()).digest(), None)


def key_of(body: dict, tenant: str = "team-a") -> str:
    """The key the cache stage computes for this body (templating aside: the prompt is as sent)."""
    request, extras = decode_request(json.dumps(body).encode())
    call = Call("rid", request, to_canonical(request, extras), SURFACE, key=api_key(tenant))
    call.route = resolve_route(request, RESOLVE)
    return cache_key(call)


BASE = {"model": "emu/m", "prompt": "Say hi", "cache": {"type": "exact_match", "ttl": 60}}


def test_the_same_call_gives_the_same_key():
    first = key_of(BASE)
    assert first == key_of(dict(BASE))
    assert len(first) == 64 and int(first, 16) >= 0  # a SHA-256 hex digest


def test_field_order_in_the_body_does_not_matter():
    body = {**BASE, "temperature": 0.5, "max_tokens": 20}
    reordered = dict(reversed(list(body.items())))
    assert key_of(body) == key_of(reordered)


def test_the_tenant_changes_the_key():
    assert key_of(BASE, "team-a") != key_of(BASE, "team-c")


@pytest.mark.parametrize("change", [
    {"model": "emu/other"},
    {"model": "emu2/m"},
    {"prompt": "Say hello"},
    {"prompt": ["Say hi"]},
    {"temperature": 0.3},
    {"max_tokens": 5},
    {"top_p": 0.5},
    {"n": 2},
    {"stop": "\n"},
    {"seed": 7},
    {"echo": True},
    {"frequency_penalty": 0.5},
    {"presence_penalty": 0.5},
    {"fallbacks": [{"model": "emu2/f"}]},
    {"thinking": {"type": "enabled", "budget_tokens": 2048}},
], ids=lambda change: next(iter(change)))
def test_what_changes_the_answer_changes_the_key(change):
    assert key_of({**BASE, **change}) != key_of(BASE)


def test_the_load_balancer_is_part_of_the_key():
    lb = {"type": "weight_based", "models": [{"model": "emu/a", "weight": 0.5}, {"model": "emu/b", "weight": 0.5}]}
    other = {"type": "weight_based", "models": [{"model": "emu/a", "weight": 0.9}, {"model": "emu/b", "weight": 0.1}]}
    assert key_of({**BASE, "load_balancer": lb}) != key_of({**BASE, "load_balancer": other})
    assert key_of({**BASE, "load_balancer": lb}) != key_of(BASE)


@pytest.mark.parametrize("change", [
    {"user": "end-user-42"},
    {"name": "trace"},
    {"retry": {"count": 3, "on_codes": [429, 500]}},
    {"timeout": {"call_timeout": 1000}},
    {"cache": {"type": "exact_match", "ttl": 5}},
    {"stream": True},
    {"orq": {"identity": {"id": "someone"}, "contact": {"id": "c"}, "thread": {"id": "t"}, "name": "n",
             "retry": {"count": 1}, "timeout": {"call_timeout": 10}}},
], ids=lambda change: next(iter(change)) + ("." + "+".join(change["orq"]) if "orq" in change else ""))
def test_what_does_not_change_the_answer_keeps_the_key(change):
    assert key_of({**BASE, **change}) == key_of(BASE)


def test_orq_routing_fields_key_like_top_level_ones():
    assert key_of({**BASE, "orq": {"fallbacks": [{"model": "emu2/f"}]}}) == key_of(
        {**BASE, "fallbacks": [{"model": "emu2/f"}]})


def test_fields_outside_the_schema_change_the_key():
    assert key_of({**BASE, "top_k": 5}) != key_of(BASE)
    assert key_of({**BASE, "top_k": 5}) != key_of({**BASE, "top_k": 6})


def test_omitted_max_tokens_equals_the_spec_default():
    assert key_of({**BASE, "max_tokens": 16}) == key_of(BASE)


@pytest.mark.parametrize("field,value", [("temperature", 1), ("top_p", 1), ("frequency_penalty", 0),
                                         ("presence_penalty", 0)])
def test_omitted_float_params_equal_explicit_spec_defaults(field, value):
    assert key_of({**BASE, field: value}) == key_of(BASE)


def test_explicit_non_numeric_defaults_equal_omitted_ones():
    assert key_of({**BASE, "n": 1, "echo": False, "stop": None, "seed": None}) == key_of(BASE)
