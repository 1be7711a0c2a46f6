"""Schema-driven fuzzing of the running proxy (issue 9, "Keep it found").

Bodies come from the spec's request schema (tests/schema_strategy.py): valid ones, routed to the
emulator, and the same with one field replaced by any JSON value, or sent as broken bytes. Over
real sockets, within FUZZ_SECONDS, every answer must be: not a 5xx, every error in our shape, a 200
complete (JSON with choices, or SSE ending in [DONE]); afterwards the proxy's log has no traceback,
no "unhandled error", and only JSON lines.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import OpenAIEmulator
from tests.proxy_process import REPO, ProxyProcess
from tests.schema_strategy import JSON, SchemaStrategies, paths, replaced

URL = "/v2/router/completions"
FUZZ_SECONDS = float(os.environ.get("SWITCHYARD_FUZZ_SECONDS", "50"))
MAX_EXAMPLES = 900  # drawing a body costs about as much as sending it: past the time, few are left
SPEC_NAME = "router-completions.openapi.yaml"
# orq.ai's published spec, the contract (README), kept in the repository so the test never depends
# on what lies beside the clone.
SPEC_PATH = REPO / "tests" / "data" / SPEC_NAME


def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


# Names that route to the emulator (so valid bodies go the whole way), and ones that do not.
MODELS = st.one_of(st.sampled_from(["emu/fuzz", "emu2/fuzz", "fast", "emu/a/b"]),
                   st.sampled_from(["emu/fuzz", "emu2/fuzz"]), st.text(max_size=12))


def bodies(root: dict[str, Any]) -> st.SearchStrategy[bytes]:
    schema = root["paths"][URL]["post"]["requestBody"]["content"]["application/json"]["schema"]
    valid = SchemaStrategies(root, {"model": MODELS}).for_schema(schema)

    @st.composite
    def mutated(draw: st.DrawFn) -> Any:
        body = draw(valid)
        places = paths(body)
        if not places:
            return body
        return replaced(body, draw(st.sampled_from(places)), draw(JSON))

    as_json = st.one_of(valid, valid, mutated()).map(lambda b: json.dumps(b).encode())
    raw = st.one_of(st.binary(max_size=64), as_json.flatmap(
        lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda cut: b[:cut])))  # truncated JSON
    return st.one_of(as_json, as_json, as_json, raw)


@pytest.fixture(scope="module")
def fuzz_proxy(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    process = start_proxy(emulator, tmp_path_factory.mktemp("fuzz"))
    yield process
    process.stop()


def check(response: httpx.Response, body: bytes) -> None:
    status = response.status_code
    assert status < 500, (status, body[:300], response.text[:300])
    if status == 200:
        if response.headers["content-type"].startswith("text/event-stream"):
            assert response.text.endswith("data: [DONE]\n\n"), response.text[-300:]
        else:
            assert "choices" in response.json()
        return
    assert response.headers["content-type"].startswith("application/json"), (status, response.text[:300])
    payload = response.json()
    assert list(payload) == ["error"], payload
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] is None or isinstance(error["param"], str)


def test_fuzz_the_request_schema(fuzz_proxy: ProxyProcess, emulator: OpenAIEmulator) -> None:
    root = spec()
    emulator.reset()
    started = time.monotonic()
    seen: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"}

    with httpx.Client(base_url=fuzz_proxy.url, headers=headers, timeout=30) as client:

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(bodies(root))
        def fuzz(body: bytes) -> None:
            if time.monotonic() - started > FUZZ_SECONDS:
                return  # bounded: the remaining examples are drawn but not sent
            response = client.post(URL, content=body)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            check(response, body)

        fuzz()
    time.sleep(0.3)  # the log is written in batches
    log = fuzz_proxy.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
    lines = log.split("\n")  # not splitlines(): U+2028 and U+0085 inside a JSON string are no line ends
    assert all(line.startswith("{") for line in lines if line), [l for l in lines if l and l[0] != "{"][:5]
    total = sum(seen.values())
    print(f"fuzz: {total} requests in {time.monotonic() - started:.0f} s, statuses {dict(sorted(seen.items()))}")
    assert total >= 100 and seen.get(200, 0) >= 10 and seen.get(400, 0) >= 10, seen
