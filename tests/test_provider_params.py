"""Every provider's parameter table decides every canonical request field, and the decisions
behave as documented (docs/providers.md)."""

from __future__ import annotations

import pytest

from proxy.core.errors import ProxyError
from proxy.core.model import REQUEST_FIELDS, ChatRequest, Message, Thinking
from proxy.providers.params import Refuse, is_set, refuse_unsupported, undecided
from proxy.providers.registry import PROVIDER_TYPES, connector_class


@pytest.mark.parametrize("type_name", sorted(PROVIDER_TYPES))
def test_every_canonical_field_has_a_decision(type_name):
    table = connector_class(type_name).PARAMS
    assert not undecided(table), f"{type_name}: no decision for {undecided(table)}"
    assert not set(table) - set(REQUEST_FIELDS), f"{type_name}: decisions for fields that do not exist"


def request(**fields):
    return ChatRequest(messages=[Message("user", "hi")], prompt="hi", **fields)


@pytest.mark.parametrize(("field", "value"), [("temperature", 1), ("top_p", 1.0), ("n", 1), ("echo", False),
                                              ("frequency_penalty", 0), ("presence_penalty", 0.0)])
def test_a_spec_default_counts_as_unset(field, value):
    assert not is_set(request(**{field: value}), field)
    assert is_set(request(**{field: 0.5 if field != "n" else 2}), field) or field == "echo"


def test_refusal_names_the_field_and_the_provider():
    table = {"seed": Refuse("no seeds here")}
    with pytest.raises(ProxyError) as caught:
        refuse_unsupported(table, request(seed=3), "acme")
    err = caught.value
    assert err.status == 400 and err.param == "seed" and "'acme'" in err.message


def test_refusal_applies_only_to_the_values_it_names():
    table = {"thinking": Refuse("no thinking", when=lambda t: t.type != "disabled")}
    refuse_unsupported(table, request(thinking=Thinking("disabled")), "acme")  # ignored, not refused
    with pytest.raises(ProxyError):
        refuse_unsupported(table, request(thinking=Thinking("adaptive")), "acme")


def test_a_refused_extra_is_named_by_its_own_name():
    with pytest.raises(ProxyError) as caught:
        refuse_unsupported({"extras": Refuse("not OpenAI-compatible")}, request(extras={"top_k": 5}), "acme")
    assert caught.value.param == "top_k"
