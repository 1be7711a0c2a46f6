"""`load_balancer {type: weight_based, models}` over real sockets: the weighted draw, normalised
weights, `model` ignored, the drawn model followed by `fallbacks` (DESIGN.md, routing semantics 1)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import KEY_A
from tests.emulators.openai_server import OpenAIEmulator, Reply

URL = "/v2/router/completions"
REQUESTS = 2000


def calls(upstream: OpenAIEmulator) -> list[str | None]:
    return [r.model for r in upstream.requests if r.path == "/v1/completions"]


def balancer(*weighted: tuple[str, float]) -> dict:
    return {"type": "weight_based", "models": [{"model": m, "weight": w} for m, w in weighted]}


def run_many(client: httpx.Client, body: dict, n: int) -> Counter[str]:
    """n requests over the client's keep-alive pool, a few at a time; the served models counted."""

    def one(_: int) -> str:
        r = client.post(URL, json=body)
        assert r.status_code == 200, r.text
        return r.headers["x-switchyard-model"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return Counter(pool.map(one, range(n)))


@pytest.fixture()
def pooled(proxy) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30,
                      limits=limits) as c:
        yield c


def assert_split(upstream: OpenAIEmulator, served: Counter[str], expected: dict[str, float]) -> None:
    recorded = Counter(calls(upstream))
    assert sum(recorded.values()) == REQUESTS
    assert set(recorded) == {label.split("/", 1)[1] for label in expected}
    for label, share in expected.items():
        model = label.split("/", 1)[1]
        assert served[label] == recorded[model]  # the header tells the truth
        assert abs(recorded[model] / REQUESTS - share) <= 0.04, (label, recorded)


def test_weights_split_the_traffic(pooled, upstream):
    body = {"prompt": "hi", "max_tokens": 1, "load_balancer": balancer(("emu/w70", 0.7), ("emu/w30", 0.3))}
    served = run_many(pooled, body, REQUESTS)
    assert_split(upstream, served, {"emu/w70": 0.7, "emu/w30": 0.3})


def test_weights_are_normalised(pooled, upstream):
    # 0.2 + 0.2 + 0.4 = 0.8: normalised to 25 / 25 / 50 %.
    body = {"prompt": "hi", "max_tokens": 1,
            "load_balancer": balancer(("emu/n1", 0.2), ("emu/n2", 0.2), ("emu2/n4", 0.4))}
    served = run_many(pooled, body, REQUESTS)
    assert_split(upstream, served, {"emu/n1": 0.25, "emu/n2": 0.25, "emu2/n4": 0.5})


def test_a_weight_above_one_is_rejected_by_the_spec(client, upstream):
    r = client.post(URL, json={"prompt": "hi", "load_balancer": balancer(("emu/a", 7), ("emu/b", 3))})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "load_balancer.models[0].weight"
    assert calls(upstream) == []


def test_model_is_ignored_when_a_load_balancer_is_given(client, upstream):
    for _ in range(20):
        r = client.post(URL, json={"model": "emu/ignored", "prompt": "hi",
                                   "load_balancer": balancer(("emu/lbonly", 1))})
        assert r.status_code == 200, r.text
        assert r.headers["x-switchyard-model"] == "emu/lbonly"
    assert calls(upstream) == ["lbonly"] * 20


def test_the_drawn_model_is_followed_by_fallbacks(client, upstream):
    upstream.script("lbfail", Reply(status=500))
    r = client.post(URL, json={"prompt": "hi", "load_balancer": balancer(("emu/lbfail", 1)),
                               "fallbacks": [{"model": "emu2/good"}]})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["lbfail", "good"]
    assert r.headers["x-switchyard-model"] == "emu2/good"
    assert r.headers["x-switchyard-attempts"] == "2"


def test_only_the_drawn_model_is_tried_before_the_fallbacks(client, upstream):
    # The other balanced model is not a fallback: one draw, then `fallbacks` in order.
    upstream.script("lbx", Reply(status=503))
    upstream.script("lby", Reply(status=503))
    for _ in range(10):
        before = len(calls(upstream))
        r = client.post(URL, json={"prompt": "hi", "load_balancer": balancer(("emu/lbx", 0.5), ("emu/lby", 0.5)),
                                   "fallbacks": [{"model": "emu2/good"}]})
        assert r.status_code == 200, r.text
        made = calls(upstream)[before:]
        assert len(made) == 2 and made[0] in {"lbx", "lby"} and made[1] == "good", made
