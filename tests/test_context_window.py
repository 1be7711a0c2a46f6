"""Context-window fallback through each provider's own connector (README, "Routing policy"):
Anthropic's "prompt is too long" and Gemini's "input token count exceeds the maximum", as their
emulators answer them, move on to the next candidate instead of being a plain 400. (OpenAI's
`context_length_exceeded` and llama.cpp's `exceed_context_size_error` are in
tests/test_routing_policy.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import proxy_config
from tests.emulators.anthropic_server import AnthropicEmulator, anthropic_error
from tests.emulators.anthropic_server import Reply as AnthropicReply
from tests.emulators.google_server import GoogleEmulator, google_error
from tests.emulators.google_server import Reply as GoogleReply
from tests.emulators.openai_server import OpenAIEmulator
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
ANT_KEY = "sk-ant-upstream-0123456789"
GKEY = "AIza-upstream-0123456789"
CLAUDE = "claude-sonnet-4-20250514"
GEMINI = "gemini-2.0-flash"


@pytest.fixture(scope="module")
def ant() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator(api_key=ANT_KEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def gem() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(api_key=GKEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def proxy(emulator: OpenAIEmulator, ant: AnthropicEmulator, gem: GoogleEmulator,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    providers = (f'  ant: {{type: anthropic, base_url: "{ant.base_url}", api_key: "{ANT_KEY}"}}\n'
                 f'  gem: {{type: google, base_url: "{gem.base_url}", api_key: "{GKEY}"}}\n')
    groups = f"""
groups:
  claude-then-big: {{targets: [{{model: ant/{CLAUDE}}}], fallbacks: [emu/big-window]}}
  gemini-then-big: {{targets: [{{model: gem/{GEMINI}}}], fallbacks: [emu/big-window]}}
"""
    config = proxy_config(emulator, groups).replace("providers:\n", "providers:\n" + providers, 1)
    process = ProxyProcess(config, tmp_path_factory.mktemp("context-window"))
    process.start()
    yield process
    process.stop()



def big_window_calls(upstream: OpenAIEmulator) -> int:
    return sum(1 for r in upstream.requests if r.model == "big-window")


def test_anthropic_prompt_too_long_falls_back(client, upstream, ant):
    ant.reset()
    too_long = anthropic_error(400, "prompt is too long: 208310 tokens > 200000 maximum")
    ant.script(CLAUDE, AnthropicReply(status=400, error_body=too_long))
    r = client.post(URL, json={"model": "claude-then-big", "prompt": "a long prompt"})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-model"] == "emu/big-window"
    assert len(ant.requests) == 1 and big_window_calls(upstream) == 1


def test_anthropic_other_400_is_the_answer(client, upstream, ant):
    ant.reset()
    ant.script(CLAUDE, AnthropicReply(status=400, error_body=anthropic_error(400, "messages: bad role")))
    r = client.post(URL, json={"model": "claude-then-big", "prompt": "hi"})
    assert r.status_code == 400
    assert big_window_calls(upstream) == 0


def test_gemini_input_token_count_exceeded_falls_back(client, upstream, gem):
    gem.reset()
    too_long = google_error(400, "The input token count (1200000) exceeds the maximum number of tokens "
                                 "allowed (1048576).")
    gem.script(GEMINI, GoogleReply(status=400, error_body=too_long))
    r = client.post(URL, json={"model": "gemini-then-big", "prompt": "a long prompt"})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-model"] == "emu/big-window"
    assert len(gem.requests) == 1 and big_window_calls(upstream) == 1
