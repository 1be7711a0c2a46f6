"""Knowledge bases over real sockets: orq's knowledge API (through the orq SDK too), search types
on a small corpus with known answers, filters, threshold/top_k/include_*, tenancy, malformed
bodies, and retrieval-augmented completions whose upstream request shows the context.

Embeddings come from the OpenAI emulator's `/v1/embeddings` (tests/emulators/openai_embeddings.py:
a hashed bag of concepts, so "reimbursement" lands on "refund" without sharing a word)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from orq_ai_sdk import Orq

from tests.conftest import KEY_A, KEY_B, proxy_config
from tests.emulators.google_server import GoogleEmulator
from tests.emulators.google_server import Reply as GeminiReply
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess

GKEY = "AIza-upstream-0123456789"

EMBED = "emu/text-embedding-3-small"
CORPUS = [
    {"text": "Our refund policy: purchases may be sent back within 30 days.",
     "metadata": {"topic": "billing", "year": 2024, "public": True}},
    {"text": "The office is closed on public holidays and weekends.",
     "metadata": {"topic": "office", "year": 2022, "public": True}},
    {"text": "Error code XJ-42 means the disk is full.",
     "metadata": {"topic": "support", "year": 2023, "public": False}},
    {"text": "Invoices are emailed on the first day of each month.",
     "metadata": {"topic": "billing", "year": 2021}},
]


PG_URL = "postgresql://postgres@127.0.0.1:5432"


def knowledge_config(backend: str, tmp: Path, database: str = "") -> str:
    store = f'backend: sqlite\n  path: "{tmp / "kb.db"}"' if backend == "sqlite" else \
        f'backend: postgres\n  url: "{PG_URL}/{database}"\n  schema: kb_test'
    return f"""
knowledge:
  {store}
  bases:
    - {{key: handbook, embedding_model: {EMBED}, keys: [team-a]}}
"""


async def _admin(sql: str) -> None:
    import asyncpg

    db = await asyncpg.connect(f"{PG_URL}/postgres", timeout=5)
    try:
        await db.execute(sql)
    finally:
        await db.close()


@contextmanager
def pg_database() -> Iterator[str]:
    """A database of this test run's own, dropped afterwards (never anyone else's data)."""
    name = f"switchyard_kb_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, ImportError) as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable ({err}): the postgres backend is untested")
    try:
        yield name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


CONFIGS: dict[str, str] = {}  # proxy url → its config, for a second proxy on the same store


@pytest.fixture(scope="module")
def gemini() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(api_key=GKEY) as emu:
        yield emu


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def kproxy(request: pytest.FixtureRequest, emulator: OpenAIEmulator, gemini: GoogleEmulator,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    tmp = tmp_path_factory.mktemp("knowledge")
    with ExitStack() as stack:
        database = stack.enter_context(pg_database()) if request.param == "postgres" else ""
        config = proxy_config(emulator, knowledge_config(request.param, tmp, database)).replace(
            "providers:\n", f'providers:\n  gem: {{type: google, base_url: "{gemini.base_url}", api_key: "{GKEY}"}}\n',
            1)
        process = ProxyProcess(config, tmp).start()
        stack.callback(process.stop)
        CONFIGS[process.url] = config
        yield process


@pytest.fixture()
def api(kproxy: ProxyProcess, upstream: OpenAIEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kproxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        yield c


_counter = iter(range(1_000_000))


def make_kb(api: httpx.Client, **settings: object) -> tuple[str, str, list[str]]:
    """A fresh knowledge base holding CORPUS: (kb id, datasource id, chunk ids in CORPUS order)."""
    key = f"kb-{next(_counter)}"
    r = api.post("/v2/knowledge", json={"key": key, "embedding_model": EMBED, "path": "Default",
                                        "retrieval_settings": settings or None})
    assert r.status_code == 200, r.text
    kb = r.json()["_id"]
    ds = api.post(f"/v2/knowledge/{kb}/datasources", json={"display_name": "docs"}).json()["_id"]
    r = api.post(f"/v2/knowledge/{kb}/datasources/{ds}/chunks", json=CORPUS)
    assert r.status_code == 200, r.text
    return kb, ds, [c["_id"] for c in r.json()]


def search(api: httpx.Client, kb: str, **body: object) -> list[dict]:
    r = api.post(f"/v2/knowledge/{kb}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["matches"]


def ids(matches: list[dict]) -> list[str]:
    return [m["id"] for m in matches]


# -- the orq SDK, unmodified -------------------------------------------------------------------------------
def test_orq_sdk_knowledge_lifecycle(kproxy: ProxyProcess, upstream: OpenAIEmulator) -> None:
    with Orq(api_key=KEY_A, server_url=kproxy.url) as orq:
        kb = orq.knowledge.create(request={"key": "sdk-kb", "embedding_model": EMBED, "path": "Default"})
        assert kb.key == "sdk-kb" and kb.model == EMBED
        ds = orq.knowledge.create_datasource(knowledge_id=kb.id, display_name="manual")
        chunks = orq.knowledge.create_chunks(knowledge_id=kb.id, datasource_id=ds.id, request_body=[
            {"text": "The refund window is 30 days.", "metadata": {"lang": "en"}},
            {"text": "Parking is behind the building."},
        ])
        assert chunks[0].text == "The refund window is 30 days."
        found = orq.knowledge.search(knowledge_id="sdk-kb", query="reimbursement", search_type="vector_search",
                                     top_k=1, search_options={"include_metadata": True, "include_scores": True})
        assert found.matches[0].id == chunks[0].id
        assert found.matches[0].scores is not None and found.matches[0].scores.search_score > 0.3
        listed = orq.knowledge.list_chunks(knowledge_id=kb.id, datasource_id=ds.id)
        assert len(listed.data) == 2 and not listed.has_more
        assert orq.knowledge.retrieve_chunk(knowledge_id=kb.id, datasource_id=ds.id,
                                            chunk_id=chunks[1].id).text == "Parking is behind the building."
        gone = orq.knowledge.delete_chunks(knowledge_id=kb.id, datasource_id=ds.id, chunk_ids=[chunks[1].id, "nope"])
        assert gone.deleted_count == 1 and gone.failed_ids == ["nope"]
        assert orq.knowledge.retrieve_datasource(knowledge_id=kb.id, datasource_id=ds.id).chunks_count == 1
        orq.knowledge.delete(knowledge_id=kb.id)
        assert all(k.key != "sdk-kb" for k in orq.knowledge.list().data)


# -- search types on a corpus with known answers ----------------------------------------------------------------
def test_keyword_finds_the_exact_term_vector_the_paraphrase_hybrid_both(api: httpx.Client) -> None:
    kb, _, chunk = make_kb(api)
    assert ids(search(api, kb, query="XJ-42", search_type="keyword_search"))[0] == chunk[2]
    # "reimbursement" shares no word with the refund chunk: keyword misses it, vector finds it.
    assert chunk[0] not in ids(search(api, kb, query="reimbursement", search_type="keyword_search"))
    assert ids(search(api, kb, query="reimbursement", search_type="vector_search", top_k=1)) == [chunk[0]]
    both = ids(search(api, kb, query="reimbursement XJ-42", search_type="hybrid_search", top_k=2))
    assert set(both) == {chunk[0], chunk[2]}


def test_search_type_defaults_to_the_knowledge_base_setting(api: httpx.Client) -> None:
    kb, _, chunk = make_kb(api, retrieval_type="keyword_search")
    assert search(api, kb, query="reimbursement") == []  # keyword: no shared word
    assert ids(search(api, kb, query="reimbursement", search_type="vector_search", top_k=1)) == [chunk[0]]


def test_top_k_threshold_and_include_options(api: httpx.Client) -> None:
    kb, _, chunk = make_kb(api)
    assert len(search(api, kb, query="the", search_type="vector_search", top_k=2)) == 2
    plain = search(api, kb, query="reimbursement", search_type="vector_search", top_k=1)[0]
    assert set(plain) == {"id", "text"}
    full = search(api, kb, query="reimbursement", search_type="vector_search", top_k=1,
                  search_options={"include_vectors": True, "include_metadata": True, "include_scores": True})[0]
    assert full["metadata"] == CORPUS[0]["metadata"] and len(full["vector"]) == 64
    score = full["scores"]["search_score"]
    assert 0 < score < 1
    assert ids(search(api, kb, query="reimbursement", search_type="vector_search",
                      threshold=score - 0.01))[0] == chunk[0]
    above = search(api, kb, query="reimbursement", search_type="vector_search", threshold=min(1.0, score + 0.01),
                   search_options={"include_scores": True})
    assert chunk[0] not in ids(above) and all(m["scores"]["search_score"] >= score for m in above)
    # keyword scores are BM25 squashed into 0..1: a threshold of 0.99 keeps nothing on this corpus
    assert search(api, kb, query="XJ-42", search_type="keyword_search", threshold=0.99) == []


FILTERS = [
    ({"topic": {"eq": "billing"}}, {0, 3}),
    ({"topic": {"ne": "billing"}}, {1, 2}),
    ({"year": {"gt": 2022}}, {0, 2}),
    ({"year": {"gte": 2022}}, {0, 1, 2}),
    ({"year": {"lt": 2022}}, {3}),
    ({"year": {"lte": 2022}}, {1, 3}),
    ({"topic": {"in": ["office", "support"]}}, {1, 2}),
    ({"topic": {"nin": ["office", "support"]}}, {0, 3}),
    ({"public": {"exists": False}}, {3}),
    ({"public": {"eq": True}}, {0, 1}),
    ({"year": {"eq": 2024}}, {0}),
    ({"and": [{"topic": {"eq": "billing"}}, {"year": {"gt": 2022}}]}, {0}),
    ({"or": [{"topic": {"eq": "office"}}, {"year": {"lt": 2022}}]}, {1, 3}),
    ({"topic": {"eq": "billing"}, "public": {"exists": True}}, {0}),
]


@pytest.mark.parametrize("search_type", ["vector_search", "keyword_search"])
def test_every_filter_operator(api: httpx.Client, search_type: str) -> None:
    kb, _, chunk = make_kb(api)
    # every chunk has one of these words (keyword); vector keeps scores >= 0 (threshold 0)
    query = "refund office disk invoices"
    for flt, expected in FILTERS:
        got = set(ids(search(api, kb, query=query, search_type=search_type, top_k=10, threshold=0, filter_by=flt)))
        if search_type == "keyword_search":
            assert got == {chunk[i] for i in expected}, flt
        else:  # vector: a filtered-out chunk never appears, whatever its score
            assert got <= {chunk[i] for i in expected}, flt


@pytest.mark.parametrize(("body", "param"), [
    ({"query": "x", "filter_by": {"year": {"like": 1}}}, "filter_by.year.like"),
    ({"query": "x", "filter_by": {"year": {"gt": "2020"}}}, "filter_by.year.gt"),
    ({"query": "x", "filter_by": {"or": [{"a": {"eq": 1}}, {"b": {"in": 3}}]}}, "filter_by.or[1].b.in"),
    ({"query": "x", "top_k": 0}, "top_k"),
    ({"query": "x", "threshold": 2}, "threshold"),
    ({"query": "x", "search_type": "fuzzy"}, "search_type"),
    ({"top_k": 3}, "query"),
    ({"query": "x", "rerank_config": {"model": "nowhere/rerank"}}, "rerank_config.model"),
    ({"query": "x", "rerank_config": {"model": "emu/rr", "top_k": 0}}, "rerank_config.top_k"),
    ({"query": "x", "agentic_rag_config": {}}, "agentic_rag_config.model"),
])
def test_malformed_search_is_400_naming_the_path(api: httpx.Client, body: dict, param: str) -> None:
    kb, _, _ = make_kb(api)
    r = api.post(f"/v2/knowledge/{kb}/search", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(("body", "param"), [
    ([], None),
    ([{"metadata": {}}], "[0].text"),
    ([{"text": "ok"}, {"text": "x", "metadata": {"tags": ["a"]}}], "[1].metadata[...]"),
    ([{"text": "x", "embedding": ["a"]}], "[0].embedding[0]"),
    ([{"text": "x"}] * 101, None),
])
def test_malformed_chunk_batches_are_400_naming_the_path(api: httpx.Client, body: list, param: str | None) -> None:
    kb, ds, _ = make_kb(api)
    r = api.post(f"/v2/knowledge/{kb}/datasources/{ds}/chunks", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_a_body_over_the_limit_is_413(api: httpx.Client) -> None:
    kb, ds, _ = make_kb(api)
    big = [{"text": "x", "embedding": [0.123456789] * 5000}] * 2  # > the suite's 64 KiB max_body_bytes
    r = api.post(f"/v2/knowledge/{kb}/datasources/{ds}/chunks", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_chunk_update_reembeds_and_delete_datasource_removes_chunks(api: httpx.Client) -> None:
    kb, ds, chunk = make_kb(api)
    url = f"/v2/knowledge/{kb}/datasources/{ds}/chunks/{chunk[1]}"
    r = api.patch(url, json={"text": "Reimbursement questions go to billing."})
    assert r.status_code == 200 and r.json()["text"].startswith("Reimbursement")
    top = ids(search(api, kb, query="refund", search_type="vector_search", top_k=2))
    assert chunk[1] in top  # the new text's vector, not the old one
    assert api.get(f"/v2/knowledge/{kb}/datasources/{ds}/chunks", params={"q": "reimbursement"}).json()["data"][0][
        "_id"] == chunk[1]
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert api.delete(f"/v2/knowledge/{kb}/datasources/{ds}").status_code == 204
    assert search(api, kb, query="XJ-42", search_type="keyword_search") == []
    assert search(api, kb, query="XJ-42", search_type="vector_search") == []


def test_two_proxies_sharing_a_store_see_each_others_writes(api: httpx.Client, kproxy: ProxyProcess,
                                                            tmp_path: Path) -> None:
    """Vectors are cached between searches; a write through one proxy must reach the other's."""
    kb, ds, chunk = make_kb(api)
    second = ProxyProcess(CONFIGS[kproxy.url], tmp_path).start()
    try:
        with httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as other:
            assert ids(search(other, kb, query="reimbursement", search_type="vector_search", top_k=1)) == [chunk[0]]
            api.patch(f"/v2/knowledge/{kb}/datasources/{ds}/chunks/{chunk[3]}",
                      json={"text": "Reimbursement and refund questions go to billing."})
            assert ids(search(other, kb, query="reimbursement", search_type="vector_search", top_k=1)) == [chunk[3]]
            api.delete(f"/v2/knowledge/{kb}/datasources/{ds}/chunks/{chunk[3]}")
            assert chunk[3] not in ids(search(other, kb, query="reimbursement", search_type="vector_search"))
    finally:
        second.stop()


def test_chunk_list_cursors(api: httpx.Client) -> None:
    kb, ds, chunk = make_kb(api)
    url = f"/v2/knowledge/{kb}/datasources/{ds}/chunks"
    first = api.get(url, params={"limit": 2}).json()
    assert [c["_id"] for c in first["data"]] == chunk[:2] and first["has_more"]
    rest = api.get(url, params={"limit": 2, "starting_after": chunk[1]}).json()
    assert [c["_id"] for c in rest["data"]] == chunk[2:] and not rest["has_more"]
    back = api.get(url, params={"limit": 2, "ending_before": chunk[3]}).json()
    assert [c["_id"] for c in back["data"]] == chunk[1:3]
    assert api.get(url, params={"limit": 500}).json()["error"]["param"] == "limit"


# -- rerank and agentic rewriting -------------------------------------------------------------------------------
def test_rerank_reorders_fills_rerank_score_and_applies_its_threshold(api: httpx.Client,
                                                                      upstream: OpenAIEmulator) -> None:
    kb, _, chunk = make_kb(api)
    found = search(api, kb, query="disk full error", search_type="vector_search", top_k=4,
                   rerank_config={"model": "emu/jina-reranker-v2", "threshold": 0.5, "top_k": 3},
                   search_options={"include_scores": True})
    # the emulated reranker scores the share of query words a chunk has: only XJ-42's has all three
    assert ids(found) == [chunk[2]]
    assert found[0]["scores"]["rerank_score"] == 1.0 and "search_score" in found[0]["scores"]
    sent = [r for r in upstream.requests if r.path == "/v1/rerank"][-1].body
    assert sent is not None and sent["model"] == "jina-reranker-v2" and sent["query"] == "disk full error"
    plain = search(api, kb, query="disk full error", search_type="vector_search", top_k=4)
    assert sent["documents"] == [m["text"] for m in plain]  # the search's own candidates, in its order


def test_knowledge_base_rerank_setting_applies_when_the_search_names_none(api: httpx.Client,
                                                                          upstream: OpenAIEmulator) -> None:
    kb, _, chunk = make_kb(api, rerank_config={"rerank_model": "emu/rr", "top_k": 1, "rerank_threshold": 0.1})
    assert api.get(f"/v2/knowledge/{kb}").json()["retrieval_settings"]["rerank_config"]["rerank_model"] == "emu/rr"
    assert ids(search(api, kb, query="invoices emailed monthly", search_type="vector_search", top_k=4)) == [chunk[3]]
    assert any(r.path == "/v1/rerank" for r in upstream.requests)
    # null turns it off
    api.patch(f"/v2/knowledge/{kb}", json={"retrieval_settings": {"rerank_config": None}})
    assert len(search(api, kb, query="invoices emailed monthly", search_type="vector_search", top_k=4)) > 1


def test_rerank_provider_down_is_503_naming_the_knowledge_base(api: httpx.Client, upstream: OpenAIEmulator) -> None:
    kb, _, _ = make_kb(api)
    upstream.script("rr-down", Reply(status=503))
    r = api.post(f"/v2/knowledge/{kb}/search", json={"query": "disk", "search_type": "keyword_search",
                                                     "rerank_config": {"model": "emu/rr-down"}})
    assert r.status_code == 503, r.text
    assert api.get(f"/v2/knowledge/{kb}").json()["key"] in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "rerank_config.model"


def test_agentic_rewrite_searches_with_the_models_query(api: httpx.Client, gemini: GoogleEmulator) -> None:
    kb, _, chunk = make_kb(api)
    gemini.reset()
    gemini.script("gemini-2.0-flash", GeminiReply(text="  XJ-42  "))
    found = search(api, kb, query="hi! my laptop shows some strange code, what now?", search_type="keyword_search",
                   agentic_rag_config={"model": "gem/gemini-2.0-flash"})
    assert ids(found)[0] == chunk[2]  # only the rewritten query has the code
    sent = gemini.requests[-1].body
    assert sent is not None and "search query" in json.dumps(sent["systemInstruction"])
    assert sent["contents"][-1]["parts"][0]["text"] == "hi! my laptop shows some strange code, what now?"


def test_a_request_can_rerank_and_rewrite(api: httpx.Client, upstream: OpenAIEmulator,
                                          gemini: GoogleEmulator) -> None:
    kb, _, _ = make_kb(api)
    gemini.reset()
    gemini.script("gemini-2.0-flash", GeminiReply(text="disk full"))
    r = api.post("/v2/router/completions", json={"model": "emu/m", "prompt": "My machine complains, why?", "orq": {
        "knowledge_bases": [{"knowledge_id": kb, "search_type": "hybrid_search", "top_k": 4,
                             "agentic_rag_config": {"model": "gem/gemini-2.0-flash"},
                             "rerank_config": {"model": "emu/rr", "threshold": 0.9, "top_k": 2}}]}})
    assert r.status_code == 200, r.text
    prompt = [rec for rec in upstream.requests if rec.path == "/v1/completions"][-1].body["prompt"]  # type: ignore[index]
    assert CORPUS[2]["text"] in prompt and CORPUS[0]["text"] not in prompt
    assert [rec.body["query"] for rec in upstream.requests if rec.path == "/v1/rerank"][-1] == "disk full"  # type: ignore[index]


# -- tenancy ---------------------------------------------------------------------------------------------------------------
def test_another_tenant_gets_404(api: httpx.Client, kproxy: ProxyProcess) -> None:
    kb, ds, _ = make_kb(api)
    key = api.get(f"/v2/knowledge/{kb}").json()["key"]
    with httpx.Client(base_url=kproxy.url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30) as other:
        for method, path in [("GET", f"/v2/knowledge/{kb}"), ("GET", f"/v2/knowledge/{key}"),
                             ("DELETE", f"/v2/knowledge/{kb}"), ("GET", f"/v2/knowledge/{kb}/datasources/{ds}")]:
            r = other.request(method, path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path)
        r = other.post(f"/v2/knowledge/{kb}/search", json={"query": "refund"})
        assert r.status_code == 404
        assert all(k["_id"] != kb for k in other.get("/v2/knowledge").json()["data"])
        # the config-declared `handbook` lists only team-a
        assert other.get("/v2/knowledge/handbook").status_code == 404
        # and team-b may use the same key for its own base
        assert other.post("/v2/knowledge", json={"key": key, "embedding_model": EMBED}).status_code == 200


def test_config_declared_base_exists_and_cannot_be_dropped(api: httpx.Client) -> None:
    r = api.get("/v2/knowledge/handbook")
    assert r.status_code == 200 and r.json()["model"] == EMBED
    assert api.delete("/v2/knowledge/handbook").status_code == 403


# -- retrieval-augmented requests ----------------------------------------------------------------------------------------
def test_completion_upstream_sees_the_injected_context(api: httpx.Client, kproxy: ProxyProcess,
                                                       upstream: OpenAIEmulator) -> None:
    kb, _, chunk = make_kb(api)
    key = api.get(f"/v2/knowledge/{kb}").json()["key"]
    r = api.post("/v2/router/completions", json={
        "model": "emu/m", "prompt": "Reimbursement?",
        "orq": {"knowledge_bases": [{"knowledge_id": key, "top_k": 1, "search_type": "vector_search"}]}})
    assert r.status_code == 200, r.text
    sent = [rec for rec in upstream.requests if rec.path == "/v1/completions"][-1].body
    assert sent is not None
    assert sent["prompt"].startswith("Use the following context")
    assert CORPUS[0]["text"] in sent["prompt"] and CORPUS[2]["text"] not in sent["prompt"]
    assert sent["prompt"].endswith("</context>\n\nReimbursement?")
    rid = r.headers["x-request-id"]
    deadline = time.monotonic() + 3  # request log lines are written in 100 ms batches
    while time.monotonic() < deadline:
        events = [json.loads(line) for line in kproxy.log().splitlines() if line.startswith("{") and rid in line]
        if events:
            break
        time.sleep(0.05)
    assert events and events[-1]["knowledge"] == [{"knowledge_id": key, "chunk_ids": [chunk[0]]}]


def test_chat_upstream_sees_the_context_as_a_system_message(api: httpx.Client, gemini: GoogleEmulator) -> None:
    kb, _, _ = make_kb(api)
    gemini.reset()
    r = api.post("/v2/router/chat/completions", json={
        "model": "gem/gemini-2.0-flash",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the office?"},
                     {"role": "assistant", "content": "Downtown."}, {"role": "user", "content": "Reimbursement?"}],
        "orq": {"knowledge_bases": [{"knowledge_id": kb, "top_k": 1, "search_type": "vector_search"}]}})
    assert r.status_code == 200, r.text
    sent = gemini.requests[-1].body
    assert sent is not None
    system = " ".join(part["text"] for part in sent["systemInstruction"]["parts"])
    assert "Be brief." in system and CORPUS[0]["text"] in system  # the last user message's search, not the first's
    assert CORPUS[1]["text"] not in json.dumps(sent)
    assert sent["contents"][-1]["parts"][-1]["text"] == "Reimbursement?"


def test_openai_chat_gets_the_context_right_before_the_last_user_message(api: httpx.Client,
                                                                         upstream: OpenAIEmulator) -> None:
    kb, _, _ = make_kb(api)
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the office?"},
               {"role": "assistant", "content": "Downtown."}, {"role": "user", "content": "Reimbursement?"}]
    r = api.post("/v2/router/chat/completions", json={"model": "emu/m", "messages": history, "orq": {
        "knowledge_bases": [{"knowledge_id": kb, "top_k": 1, "search_type": "vector_search"}]}})
    assert r.status_code == 200, r.text
    sent = [rec for rec in upstream.requests if rec.path == "/v1/chat/completions"][-1].body
    assert sent is not None
    messages = sent["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "system", "user"]
    assert messages[:3] == history[:3] and messages[4] == history[3]
    assert CORPUS[0]["text"] in messages[3]["content"] and messages[3]["content"].startswith("Use the following")


def test_a_different_retrieval_is_a_different_cache_key(api: httpx.Client, upstream: OpenAIEmulator) -> None:
    kb, ds, chunk = make_kb(api)
    body = {"model": "emu/cached", "prompt": "reimbursement?", "cache": {"type": "exact_match", "ttl": 60},
            "orq": {"knowledge_bases": [{"knowledge_id": kb, "top_k": 1, "search_type": "vector_search"}]}}
    assert api.post("/v2/router/completions", json=body).headers["x-switchyard-cache"] == "miss"
    assert api.post("/v2/router/completions", json=body).headers["x-switchyard-cache"] == "hit"
    api.patch(f"/v2/knowledge/{kb}/datasources/{ds}/chunks/{chunk[0]}",
              json={"text": "Refunds now take 60 days."})
    assert api.post("/v2/router/completions", json=body).headers["x-switchyard-cache"] == "miss"


def test_unknown_knowledge_base_in_a_request_is_404_naming_it(api: httpx.Client) -> None:
    r = api.post("/v2/router/completions", json={"model": "emu/m", "prompt": "hi",
                                                 "orq": {"knowledge_bases": [{"knowledge_id": "missing-kb"}]}})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "orq.knowledge_bases[0].knowledge_id" and "missing-kb" in r.text


def test_embedding_provider_down_is_503_naming_the_knowledge_base(api: httpx.Client,
                                                                   upstream: OpenAIEmulator) -> None:
    kb, _, _ = make_kb(api)
    key = api.get(f"/v2/knowledge/{kb}").json()["key"]
    upstream.script("text-embedding-3-small", Reply(status=503))
    r = api.post("/v2/router/completions", json={"model": "emu/m", "prompt": "refund?",
                                                 "orq": {"knowledge_bases": [{"knowledge_id": key}]}})
    assert r.status_code == 503, r.text
    assert key in r.json()["error"]["message"]
    assert not [rec for rec in upstream.requests if rec.path == "/v1/completions"]  # never answered without it
