"""Prompt templating over real sockets: `orq.inputs` filling `{{variable}}` placeholders, stored
prompts (`orq.prompt`) with default parameters the request overrides, and the `orq` trace fields
in the request's log event. What the emulator received is the proof."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import OpenAIEmulator
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"


def sent(upstream: OpenAIEmulator) -> list[dict]:
    return [r.body for r in upstream.requests if r.path == "/v1/completions"]


def post(client: httpx.Client, **body: object) -> httpx.Response:
    body.setdefault("model", "emu/tpl")
    return client.post(URL, json=body)


def assert_bad_variable(r: httpx.Response, name: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "orq.inputs"
    assert f"`{name}`" in error["message"], error


# -- orq.inputs ---------------------------------------------------------------------------------------

def test_inputs_as_an_object_fill_the_placeholders(client, upstream):
    r = post(client, prompt="Hello {{name}}, age {{ age }}, vip {{vip}}, ratio {{ratio}}, none {{nothing}}",
             orq={"inputs": {"name": "Ann", "age": 42, "vip": True, "ratio": 1.5, "nothing": None}})
    assert r.status_code == 200, r.text
    assert sent(upstream)[0]["prompt"] == "Hello Ann, age 42, vip true, ratio 1.5, none null"


def test_inputs_as_a_list_of_items_fill_the_placeholders(client, upstream):
    r = post(client, prompt="{{greeting}} {{name}}: {{count}} {{flag}}",
             orq={"inputs": [{"key": "greeting", "value": "Hi"}, {"key": "name", "value": "Bo", "is_pii": True},
                             {"key": "count", "value": 3}, {"key": "flag", "value": False}]})
    assert r.status_code == 200, r.text
    assert sent(upstream)[0]["prompt"] == "Hi Bo: 3 false"


def test_object_values_are_rendered_as_json(client, upstream):
    r = post(client, prompt="data={{data}} list={{items}}",
             orq={"inputs": {"data": {"a": 1}, "items": ["x", 2]}})
    assert r.status_code == 200, r.text
    assert sent(upstream)[0]["prompt"] == 'data={"a":1} list=["x",2]'


def test_a_value_is_inserted_literally_never_templated_again(client, upstream):
    r = post(client, prompt="A {{a}} B", orq={"inputs": {"a": "{{b}}", "b": "no"}})
    assert r.status_code == 200, r.text
    assert sent(upstream)[0]["prompt"] == "A {{b}} B"


def test_names_are_case_sensitive(client, upstream):
    r = post(client, prompt="Hi {{Name}}", orq={"inputs": {"name": "Ann"}})
    assert_bad_variable(r, "Name")
    assert sent(upstream) == []


def test_a_missing_variable_is_a_400_naming_it(client, upstream):
    r = post(client, prompt="Hi {{name}}, about {{topic}}", orq={"inputs": [{"key": "name", "value": "Ann"}]})
    assert_bad_variable(r, "topic")
    assert sent(upstream) == []


def test_without_inputs_braces_pass_through_untouched(client, upstream):
    code = "function f() {{ return {{x}}; }} {{Name}}"
    r = post(client, prompt=code)
    assert r.status_code == 200, r.text
    r = post(client, prompt=code, orq={"name": "a trace"})  # an orq block, but no inputs
    assert r.status_code == 200, r.text
    assert [body["prompt"] for body in sent(upstream)] == [code, code]


def test_a_list_prompt_is_templated_element_wise(client, upstream):
    r = post(client, prompt=["A {{x}}", "B {{ x }} {{y}}", "C"], orq={"inputs": {"x": 1, "y": "why"}})
    assert r.status_code == 200, r.text
    assert sent(upstream)[0]["prompt"] == ["A 1", "B 1 why", "C"]
    assert len(r.json()["choices"]) == 3


def test_a_missing_variable_in_any_list_element_is_a_400(client, upstream):
    r = post(client, prompt=["A {{x}}", "B {{z}}"], orq={"inputs": {"x": 1}})
    assert_bad_variable(r, "z")
    assert sent(upstream) == []


def test_the_cache_keys_on_the_final_prompt(client, upstream):
    cache = {"type": "exact_match", "ttl": 60}
    tag = uuid.uuid4().hex
    first = post(client, prompt=f"Hi {{{{n}}}} {tag}", orq={"inputs": {"n": "Bo"}}, cache=cache)
    same = post(client, prompt=f"Hi Bo {tag}", cache=cache)
    other = post(client, prompt=f"Hi {{{{n}}}} {tag}", orq={"inputs": {"n": "Al"}}, cache=cache)
    assert [r.headers["x-switchyard-cache"] for r in (first, same, other)] == ["miss", "hit", "miss"]
    assert [body["prompt"] for body in sent(upstream)] == [f"Hi Bo {tag}", f"Hi Al {tag}"]


# -- stored prompts -----------------------------------------------------------------------------------

PROMPTS = {
    "support-reply.yaml": """
        id: support-reply
        versions:
          - version: 1
            template: "OLD v1 {{prompt}}"
            params: {max_tokens: 5}
          - version: 3
            template: "Customer {{customer_name}} asks: {{prompt}}\\nAnswer:"
            params: {max_tokens: 200, temperature: 0.2}
          - version: 2
            template: "OLD v2 {{prompt}}"
            params: {max_tokens: 7, temperature: 0.9}
    """,
    "greeting.yml": """
        versions:
          - version: 1
            template: "Say hello to {{who}}."
            params: {n: 2, stop: ["\\n"]}
    """,
}


@pytest.fixture(scope="module")
def prompts_proxy(emulator, tmp_path_factory) -> Iterator[ProxyProcess]:
    root = tmp_path_factory.mktemp("prompts-proxy")
    folder = root / "prompts"
    folder.mkdir()
    for name, text in PROMPTS.items():
        (folder / name).write_text(textwrap.dedent(text))
    process = start_proxy(emulator, root, f"prompts: {{dir: {json.dumps(str(folder))}}}")
    yield process
    process.stop()


@pytest.fixture()
def pclient(prompts_proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=prompts_proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        yield c


LATEST = {"id": "support-reply", "version": "latest"}


def test_a_stored_prompt_renders_its_newest_version_with_its_params(pclient, upstream):
    r = post(pclient, prompt="Where is my order?", orq={"prompt": LATEST, "inputs": {"customer_name": "Ann"}})
    assert r.status_code == 200, r.text
    body = sent(upstream)[0]
    assert body["prompt"] == "Customer Ann asks: Where is my order?\nAnswer:"
    assert body["max_tokens"] == 200
    assert body["temperature"] == 0.2


def test_request_fields_override_the_stored_defaults(pclient, upstream):
    r = post(pclient, prompt="Refund?", max_tokens=50,
             orq={"prompt": LATEST, "inputs": [{"key": "customer_name", "value": "Bo"}]})
    assert r.status_code == 200, r.text
    body = sent(upstream)[0]
    assert body["prompt"] == "Customer Bo asks: Refund?\nAnswer:"
    assert body["max_tokens"] == 50  # the request's
    assert body["temperature"] == 0.2  # the file's


def test_a_stored_prompt_found_by_its_file_name(pclient, upstream):
    r = post(pclient, orq={"prompt": {"id": "greeting", "version": "latest"}, "inputs": {"who": "the team"}})
    assert r.status_code == 200, r.text
    body = sent(upstream)[0]
    assert body["prompt"] == "Say hello to the team."
    assert body["n"] == 2 and body["stop"] == ["\n"]
    assert len(r.json()["choices"]) == 2


def test_a_stored_prompt_with_a_missing_variable_is_a_400(pclient, upstream):
    r = post(pclient, prompt="Hi", orq={"prompt": LATEST})
    assert_bad_variable(r, "customer_name")
    assert sent(upstream) == []


def test_an_unknown_stored_prompt_is_a_404(pclient, upstream):
    r = post(pclient, prompt="Hi", orq={"prompt": {"id": "no-such-prompt", "version": "latest"}})
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["param"] == "orq.prompt.id"
    assert "no-such-prompt" in error["message"]
    assert sent(upstream) == []


def test_the_session_proxy_has_no_stored_prompts(client, upstream):
    r = post(client, prompt="Hi", orq={"prompt": LATEST, "inputs": {"customer_name": "Ann"}})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "orq.prompt.id"


# -- trace fields and `user` --------------------------------------------------------------------------

def log_event(process: ProxyProcess, request_id: str) -> dict:
    deadline = time.monotonic() + 3
    while True:
        for line in process.log().splitlines():
            if request_id in line and line.startswith("{"):
                event = json.loads(line)
                if event.get("request_id") == request_id and event.get("event") == "request":
                    return event
        assert time.monotonic() < deadline, f"no log event for {request_id}"
        time.sleep(0.02)


def test_orq_trace_fields_reach_the_log_and_user_reaches_the_upstream(proxy, client, upstream):
    rid = f"trace-{uuid.uuid4().hex}"
    r = client.post(URL, headers={"X-Request-ID": rid}, json={
        "model": "emu/tpl", "prompt": "secret prompt text {{who}}", "user": "end-user-9",
        "orq": {"name": "checkout-flow", "identity": {"id": "identity-42", "display_name": "Ann"},
                "thread": {"id": "thread-7", "tags": ["billing"]},
                "inputs": [{"key": "who", "value": "PII-VALUE-123", "is_pii": True}]}})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == rid
    assert sent(upstream)[0]["user"] == "end-user-9"
    event = log_event(proxy, rid)
    assert event["trace_name"] == "checkout-flow"
    assert event["identity_id"] == "identity-42"
    assert event["thread_id"] == "thread-7"
    line = next(line for line in proxy.log().splitlines() if rid in line)
    assert "PII-VALUE-123" not in line and "secret prompt text" not in line


def test_orq_contact_stands_in_for_identity_in_the_log(proxy, client, upstream):
    rid = f"contact-{uuid.uuid4().hex}"
    r = client.post(URL, headers={"X-Request-ID": rid}, json={
        "model": "emu/tpl", "prompt": "hi", "name": "top-level-name", "orq": {"contact": {"id": "contact-9"}}})
    assert r.status_code == 200, r.text
    event = log_event(proxy, rid)
    assert event["identity_id"] == "contact-9"
    assert event["trace_name"] == "top-level-name"
    assert "user" not in sent(upstream)[0]  # none given, none sent
