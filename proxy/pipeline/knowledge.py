"""Stage: knowledge-base retrieval into the prompt (README, "Knowledge bases").

For each `orq.knowledge_bases` entry, search (the query defaults to the prompt, on chat to the
last user message), then put every retrieved chunk into the request through the configured
template: on a completion, the rendered context block goes before the prompt; on a chat, it is
a system message inserted before the last user message. The chunk ids used go to the request's
log event. The stage runs before the cache, so the cache key covers the final prompt. A failed
search (the embedding provider down) fails the request naming the knowledge base: an answer
without the context asked for would be silently wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import msgspec

from proxy.api.chat import last_user_text
from proxy.api.filters import parse_filter
from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.core.model import ChatRequest, Message, with_prompt
from proxy.knowledge.service import Hit, KnowledgeService, Rerank
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


def inject(request: ChatRequest, context: str) -> ChatRequest:
    """The request with the context block before the prompt, or before the last user message."""
    if request.prompt is not None:
        prompts = [f"{context}\n\n{p}" for p in request.prompts]
        return with_prompt(request, prompts[0] if isinstance(request.prompt, str) else prompts)
    messages = list(request.messages)
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages))
    messages.insert(last_user, Message("system", context))
    return msgspec.structs.replace(request, messages=messages)


def default_query(request: ChatRequest) -> str:
    if request.prompt is not None:
        return "\n".join(request.prompts)
    return last_user_text(request)


class KnowledgeStage:
    def __init__(self, service: KnowledgeService | None) -> None:
        self.service = service

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        orq = call.request.orq
        if orq is None or not orq.knowledge_bases:
            return next(call)  # no frame of ours on the common path
        return self._retrieve(call, next)

    async def _retrieve(self, call: Call, next: Next) -> Outcome:
        entries = call.request.orq.knowledge_bases if call.request.orq else None
        assert entries
        service = self.service
        if service is None:
            raise ProxyError(404, f"Knowledge base {entries[0].knowledge_id!r} not found: this proxy has no "
                             "`knowledge:` section in its config", type=ErrorType.not_found,
                             param="orq.knowledge_bases[0].knowledge_id", code=ErrorCode.not_found)
        tenant = call.key.name if call.key is not None else ""
        hits: list[Hit] = []
        used: list[dict[str, Any]] = []
        for i, entry in enumerate(entries):
            path = f"orq.knowledge_bases[{i}]."
            kb = await service.find(tenant, entry.knowledge_id, f"{path}knowledge_id")
            flt = parse_filter(entry.filter_by, f"{path}filter_by") if entry.filter_by is not None else None
            rerank = None
            if entry.rerank_config is not None:
                service.check_model(entry.rerank_config.model, f"{path}rerank_config.model")
                rerank = Rerank(entry.rerank_config.model, entry.rerank_config.threshold, entry.rerank_config.top_k)
            rewrite = entry.agentic_rag_config.model if entry.agentic_rag_config is not None else None
            found = await service.search(kb, entry.query or default_query(call.chat), top_k=entry.top_k,
                                         threshold=entry.threshold, search_type=entry.search_type, flt=flt,
                                         param=path, rerank=rerank, rewrite_model=rewrite,
                                         request_id=call.request_id)
            hits.extend(found)
            used.append({"knowledge_id": kb.key, "chunk_ids": [hit.chunk.id for hit in found]})
        call.log["knowledge"] = used
        if hits:  # nothing retrieved: the prompt stays as the client wrote it
            call.chat = inject(call.chat, service.render_context(hits))
        return await next(call)
