"""How the proxy serves a legacy completion on a chat-native provider: prompt lists and `n`
fan out to calls whose choices land at `prompt × n + j` (proxy.providers.chat)."""

from __future__ import annotations

import pytest

from proxy.config import ProviderConfig
from proxy.core.errors import ProxyError
from proxy.core.model import ChatRequest, Message
from proxy.core.target import Target
from proxy.providers.chat import MAX_FANOUT, ChatConnector


class OneChoice(ChatConnector):
    NATIVE_N = False


class ManyChoices(ChatConnector):
    NATIVE_N = True


def request(prompt, n=None, echo=None):
    return ChatRequest(messages=[Message("user", "x")], prompt=prompt, n=n, echo=echo)


def test_prompt_list_times_n_without_native_n():
    parts = OneChoice("p", ProviderConfig(type="openai")).parts(request(["a", "b"], n=3, echo=True))
    assert [(p.request.prompt, p.first_index, p.echo) for p in parts] == [
        ("a", 0, "a"), ("a", 1, "a"), ("a", 2, "a"), ("b", 3, "b"), ("b", 4, "b"), ("b", 5, "b")]
    assert all(p.request.n is None and p.request.echo is None for p in parts)
    assert [p.request.messages[0].content for p in parts] == ["a", "a", "a", "b", "b", "b"]


def test_native_n_is_one_call_per_prompt():
    parts = ManyChoices("p", ProviderConfig(type="openai")).parts(request(["a", "b"], n=3))
    assert [(p.request.prompt, p.request.n, p.first_index) for p in parts] == [("a", 3, 0), ("b", 3, 3)]


def test_a_chat_request_is_one_call():
    chat = ChatRequest(messages=[Message("user", "hi")])
    assert len(OneChoice("p", ProviderConfig(type="openai")).parts(chat)) == 1


def test_fan_out_is_bounded():
    connector = OneChoice("p", ProviderConfig(type="openai"))
    with pytest.raises(ProxyError) as caught:
        connector.check(request(["a"] * 2, n=MAX_FANOUT), Target("p", "m"))
    assert caught.value.status == 400 and caught.value.param == "prompt"
