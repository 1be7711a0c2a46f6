"""Fast OpenAI-compatible mock upstream (legacy completions wire format).

Routes:
  POST /v1/completions       200, JSON with usage, or SSE when "stream": true
  POST /fail/v1/completions  503 with an OpenAI error body, immediately
  GET  /healthz              200

The stream shape comes from the model name so it survives any proxy in between
(every proxy must forward the model): a name containing ``stream-<N>x<MS>``
streams N chunks with MS milliseconds between them; anything else uses --chunks
and --delay-ms.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import msgspec
import uvloop
from aiohttp import web

_PROFILE = re.compile(r"stream-(\d+)x(\d+)")
_FAIL_BODY = msgspec.json.encode(
    {
        "error": {
            "message": "The server is overloaded or not ready yet.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
)
_BAD_BODY = msgspec.json.encode(
    {
        "error": {
            "message": "We could not parse the JSON body of your request.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
)
_USAGE = {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21}
_DONE = b"data: [DONE]\n\n"


class Mock:
    def __init__(self, chunks: int, delay_ms: float) -> None:
        self.chunks = chunks
        self.delay_s = delay_ms / 1000
        self.seq = 0  # cheap unique ids; uuid/secrets would cost more than the rest of the handler

    def _head(self, model: str) -> dict:
        self.seq += 1
        return {
            "id": f"cmpl-mock{self.seq}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_mock",
        }

    def _profile(self, model: str) -> tuple[int, float]:
        m = _PROFILE.search(model)
        return (int(m.group(1)), int(m.group(2)) / 1000) if m else (self.chunks, self.delay_s)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = msgspec.json.decode(await request.read())
            model = str(body.get("model", "mock"))
        except (msgspec.DecodeError, AttributeError):
            return web.Response(status=400, body=_BAD_BODY, content_type="application/json")
        if body.get("stream"):
            return await self._stream(request, body, model)
        out = {
            **self._head(model),
            "choices": [{"text": " hello" * 16, "index": 0, "logprobs": None, "finish_reason": "length"}],
            "usage": _USAGE,
        }
        return web.Response(body=msgspec.json.encode(out), content_type="application/json")

    async def _stream(self, request: web.Request, body: dict, model: str) -> web.StreamResponse:
        n, delay = self._profile(model)
        opts = body.get("stream_options")
        with_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        head = self._head(model)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        for i in range(n):
            if i and delay:
                await asyncio.sleep(delay)
            chunk = {
                **head,
                "choices": [
                    {"text": " tok", "index": 0, "logprobs": None, "finish_reason": "length" if i == n - 1 else None}
                ],
            }
            if with_usage:
                chunk["usage"] = None
            # One write per event: a real upstream sends events as separate segments.
            await resp.write(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
        if with_usage:
            await resp.write(b"data: " + msgspec.json.encode({**head, "choices": [], "usage": _USAGE}) + b"\n\n")
        await resp.write(_DONE)
        await resp.write_eof()
        return resp

    async def fail(self, request: web.Request) -> web.Response:
        await request.read()  # drain so the keep-alive connection stays reusable
        return web.Response(status=503, body=_FAIL_BODY, content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(chunks: int, delay_ms: float) -> web.Application:
    mock = Mock(chunks, delay_ms)
    app = web.Application()
    app.router.add_post("/v1/completions", mock.completions)
    app.router.add_post("/fail/v1/completions", mock.fail)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--chunks", type=int, default=20, help="SSE content chunks per stream (default 20)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="delay between chunks (default 0)")
    args = ap.parse_args()
    # Big backlog: 1,000 streams connect at once and dropped SYNs would add 1 s retransmits.
    web.run_app(
        make_app(args.chunks, args.delay_ms),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        loop=uvloop.new_event_loop(),
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
