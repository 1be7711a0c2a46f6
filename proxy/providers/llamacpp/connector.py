"""`type: llamacpp`: the OpenAI connector pointed at a llama.cpp server the proxy runs itself.

Only `start` and `close` differ from `type: openai`: llama.cpp's server speaks OpenAI's
`/v1/completions`, so requests, streams, errors and cancellation are the OpenAI connector's.
"""

from __future__ import annotations

import msgspec

from proxy.providers.llamacpp.process import POOL, LaunchSpec, ManagedServer
from proxy.providers.openai.connector import OpenAIConnector


class LlamaCppConnector(OpenAIConnector):
    server: ManagedServer | None = None

    async def start(self) -> None:
        config = self.config
        assert config.threads and config.context and config.parallel  # filled in by config._check
        spec = LaunchSpec(model_path=config.model_path, model_package=config.model_package,
                          threads=config.threads, context=config.context, parallel=config.parallel)
        self.server = await POOL.acquire(self.name, spec)
        # A copy: the Runtime's config (what logs and reloads compare) keeps no URL and no key.
        self.config = msgspec.structs.replace(config, base_url=self.server.base_url, api_key=self.server.key)
        try:
            await super().start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if getattr(self, "session", None) is not None:
            await super().close()
        server, self.server = self.server, None
        if server is not None:
            await POOL.release(server)


CONNECTOR = LlamaCppConnector
