"""The builtin embedder (`embedding_model: builtin/all-minilm-l6-v2`, the `local` extra): the real
int8 MiniLM on this machine, never a network call — sentence vectors as sentence-transformers makes
them, off the event loop, and a knowledge base that finds a paraphrase through vector search."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from proxy.config import ConfigError, parse_config
from proxy.knowledge.local_embedder import (
    DIMENSIONS,
    MODEL,
    LocalEmbedder,
    MiniLM,
    missing,
)
from tests.conftest import KEY_A, proxy_config
from tests.emulators.openai_server import OpenAIEmulator
from tests.proxy_process import ProxyProcess

if (problem := missing()) is not None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{problem}: tests/run.sh installs .[test,local]")
    pytest.skip(problem, allow_module_level=True)

CORPUS = [
    "Our refund policy: purchases may be sent back within 30 days.",
    "The office is closed on public holidays and weekends.",
    "Error code XJ-42 means the disk is full.",
    "Invoices are emailed on the first day of each month.",
]
# each query shares no content word with its answer, only the meaning
PARAPHRASES = {
    "How can I get reimbursed for something I bought?": 0,
    "When is the workplace shut?": 1,
    "My storage ran out of space": 2,
}


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(minilm: MiniLM) -> None:
    anchor, paraphrase, unrelated = minilm.encode(
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."])
    assert anchor.shape == (DIMENSIONS,)
    assert float(anchor @ paraphrase) > 0.5
    assert float(anchor @ unrelated) < 0.1


def test_vectors_are_unit_length_and_padding_does_not_change_them(minilm: MiniLM) -> None:
    alone = minilm.encode(["A man is playing a guitar."])[0]
    # batched with a long text the short one is padded: mean pooling must ignore the padding
    batched = minilm.encode(["A man is playing a guitar.", "a long sentence about nothing " * 40])
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert float(alone @ batched[0]) > 0.9999


def test_texts_past_256_tokens_are_truncated_not_rejected(minilm: MiniLM) -> None:
    (vector,) = minilm.encode(["word " * 2000])
    assert np.isfinite(vector).all() and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_batches_keep_the_texts_order_and_the_event_loop_keeps_running() -> None:
    texts = [f"sentence {i}: " + "lorem ipsum dolor sit amet " * (i % 7) for i in range(48)]

    async def run() -> tuple[list[list[float]], list[list[float]], float, float]:
        embedder = LocalEmbedder(batch=8)
        try:
            singles = [(await embedder.embed([t]))[0] for t in texts[:3]]
            gaps: list[float] = []
            done = False

            async def ticker() -> None:
                last = time.perf_counter()
                while not done:
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            tick = asyncio.create_task(ticker())
            started = time.perf_counter()
            vectors = await embedder.embed(texts)
            took = time.perf_counter() - started
            done = True
            await tick
            return singles, vectors, took, max(gaps)
        finally:
            embedder.close()

    singles, vectors, took, worst_gap = asyncio.run(run())
    assert len(vectors) == len(texts)
    for single, batched in zip(singles, vectors, strict=False):
        assert float(np.dot(single, batched)) > 0.9999  # the answer is in the texts' order, not by length
    # the loop ticked all along: no pause near the embedding's whole duration
    assert worst_gap < max(0.25, took / 3), (worst_gap, took)


# -- over the API ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kproxy(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    tmp: Path = tmp_path_factory.mktemp("local-embedder")
    extra = f"""
knowledge:
  backend: sqlite
  path: "{tmp / 'kb.db'}"
  bases:
    - {{key: offline, embedding_model: {MODEL}}}
"""
    process = ProxyProcess(proxy_config(emulator, extra), tmp).start()
    yield process
    process.stop()


@pytest.fixture()
def api(kproxy: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kproxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=60) as client:
        yield client


def _fill(api: httpx.Client, kb: str) -> list[str]:
    ds = api.post(f"/v2/knowledge/{kb}/datasources", json={"display_name": "docs"}).json()["_id"]
    r = api.post(f"/v2/knowledge/{kb}/datasources/{ds}/chunks", json=[{"text": t} for t in CORPUS])
    assert r.status_code == 200, r.text
    return [c["_id"] for c in r.json()]


def _search(api: httpx.Client, kb: str, **body: object) -> list[dict]:
    r = api.post(f"/v2/knowledge/{kb}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["matches"]


def test_a_knowledge_base_on_the_builtin_embedder_finds_paraphrases(api: httpx.Client) -> None:
    r = api.post("/v2/knowledge", json={"key": "minilm", "embedding_model": MODEL, "path": "Default"})
    assert r.status_code == 200, r.text
    kb = r.json()["_id"]
    chunk_ids = _fill(api, kb)
    for query, answer in PARAPHRASES.items():
        matches = _search(api, kb, query=query, search_type="vector_search", top_k=4,
                          search_options={"include_vectors": True, "include_scores": True})
        assert matches[0]["id"] == chunk_ids[answer], (query, matches)
        assert len(matches[0]["vector"]) == DIMENSIONS
        assert matches[0]["scores"]["search_score"] > matches[1]["scores"]["search_score"] + 0.1


def test_a_config_declared_base_embeds_with_it_too(api: httpx.Client) -> None:
    chunk_ids = _fill(api, "offline")
    matches = _search(api, "offline", query="When is the workplace shut?", search_type="vector_search", top_k=1)
    assert [m["id"] for m in matches] == [chunk_ids[1]]


@pytest.mark.parametrize(("body", "param"), [
    ({"key": "bad-1", "embedding_model": "builtin/some-other-model"}, "embedding_model"),
    ({"key": "bad-2", "embedding_model": MODEL,
      "retrieval_settings": {"rerank_config": {"rerank_model": MODEL}}},
     "retrieval_settings.rerank_config.rerank_model"),
])
def test_the_builtin_name_is_for_that_embedding_model_only(api: httpx.Client, body: dict, param: str) -> None:
    r = api.post("/v2/knowledge", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_without_the_extra_a_config_naming_it_says_what_to_install(emulator: OpenAIEmulator,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    config = proxy_config(emulator, f"knowledge:\n  backend: sqlite\n  path: ':memory:'\n"
                                    f"  bases:\n    - {{key: offline, embedding_model: {MODEL}}}\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(config.replace("{port}", "8080"))
    assert "knowledge.bases[0].embedding_model" in str(raised.value)
    assert "pip install 'switchyard[local]'" in str(raised.value)
