"""Embeddings from a provider's OpenAI-compatible `POST {base_url}/embeddings`, batched; and
reranking through `POST {base_url}/rerank` in Jina's and Cohere's shape (`{model, query,
documents, top_n}` → `{results: [{index, relevance_score}]}`).

A knowledge base names its model as `provider/model`; the provider's `base_url`, `api_key` and
`headers` from the config are used as they are for completions. Failures raise EmbeddingError
with a status the service maps to 502 (the provider answered badly) or 503 (it is down).
The reserved `builtin/all-minilm-l6-v2` embeds in-process instead (`local_embedder`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from proxy.config import ProviderConfig
from proxy.knowledge.local_embedder import LocalEmbedder, is_local, missing


class EmbeddingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Item(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Answer(msgspec.Struct):
    data: list[_Item]


class _Ranked(msgspec.Struct):
    index: int
    relevance_score: float


class _Reranked(msgspec.Struct):
    results: list[_Ranked]


_decode = msgspec.json.Decoder(_Answer)
_decode_rerank = msgspec.json.Decoder(_Reranked)


class Embedder:
    """One pooled session per provider used for embeddings (opened on first use)."""

    def __init__(self, providers: dict[str, ProviderConfig], batch: int, timeout_seconds: float) -> None:
        self.providers = providers
        self.batch = batch
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._local: LocalEmbedder | None = None

    def _session(self, name: str, provider: ProviderConfig) -> aiohttp.ClientSession:
        session = self._sessions.get(name)
        if session is None:
            headers = {"Content-Type": "application/json", **provider.headers}
            if provider.api_key:
                headers["Authorization"] = f"Bearer {provider.api_key}"
            session = aiohttp.ClientSession(headers=headers, timeout=self.timeout)
            self._sessions[name] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        if self._local is not None:
            self._local.close()

    def _where(self, model: str, path: str, what: str) -> tuple[aiohttp.ClientSession, str, str]:
        name, _, upstream_model = model.partition("/")
        provider = self.providers.get(name)
        if provider is None or not provider.base_url:
            raise EmbeddingError(502, f"{what} model {model!r}: no provider {name!r} with a base_url")
        return self._session(name, provider), provider.base_url.rstrip("/") + path, upstream_model

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        if is_local(model):
            return await self._embed_locally(texts)
        session, url, upstream_model = self._where(model, "/embeddings", "embedding")
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            out.extend(await self._call(session, url, model, upstream_model, texts[start:start + self.batch]))
        return out

    async def _embed_locally(self, texts: list[str]) -> list[list[float]]:
        if self._local is None:
            # a base stored while the extra was installed, read by a process without it
            problem = missing()
            if problem is not None:
                raise EmbeddingError(503, problem)
            self._local = LocalEmbedder(self.batch)
        return await self._local.embed(texts)

    async def rerank(self, model: str, query: str, documents: list[str]) -> list[float]:
        """One relevance score per document, in the documents' order."""
        session, url, upstream_model = self._where(model, "/rerank", "rerank")
        body = {"model": upstream_model, "query": query, "documents": documents, "top_n": len(documents)}
        raw = await self._post(session, url, body, f"rerank model {model!r}")
        try:
            ranked = _decode_rerank.decode(raw).results
        except msgspec.DecodeError as err:
            raise EmbeddingError(502, f"rerank model {model!r} answered an invalid body ({err})") from None
        scores = [0.0] * len(documents)
        for item in ranked:
            if not 0 <= item.index < len(documents):
                raise EmbeddingError(502, f"rerank model {model!r} answered index {item.index} "
                                          f"for {len(documents)} documents")
            scores[item.index] = item.relevance_score
        return scores

    async def _post(self, session: aiohttp.ClientSession, url: str, body: dict[str, Any], label: str) -> bytes:
        try:
            async with session.post(url, data=msgspec.json.encode(body)) as response:
                raw = await response.read()
                if response.status >= 400:
                    status = 503 if response.status in (429, 503) else 502
                    raise EmbeddingError(status, f"{label} answered HTTP {response.status}")
                return raw
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise EmbeddingError(503, f"{label} is unreachable ({type(err).__name__})") from None

    async def _call(self, session: aiohttp.ClientSession, url: str, label: str, model: str,
                    texts: list[str]) -> list[list[float]]:
        raw = await self._post(session, url, {"model": model, "input": texts}, f"embedding model {label!r}")
        try:
            items = sorted(_decode.decode(raw).data, key=lambda item: item.index)
        except msgspec.DecodeError as err:
            raise EmbeddingError(502, f"embedding model {label!r} answered an invalid body ({err})") from None
        if len(items) != len(texts):
            raise EmbeddingError(502, f"embedding model {label!r} answered {len(items)} vectors for {len(texts)} texts")
        return [item.embedding for item in items]
