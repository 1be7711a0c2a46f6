"""Stage: knowledge-base retrieval into the prompt.

Knowledge bases (ingest, search, retrieval) are not part of this release: no knowledge base can
be configured, so every `knowledge_id` names one that does not exist. Saying so is better than
answering without the retrieval the client asked for.
"""

from __future__ import annotations

from collections.abc import Awaitable

from proxy.core.errors import ErrorCode, ErrorType, ProxyError
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome


class KnowledgeStage:
    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        orq = call.request.orq
        if orq is not None and orq.knowledge_bases:
            kb = orq.knowledge_bases[0]
            raise ProxyError(404, f"Knowledge base {kb.knowledge_id!r} not found: this proxy has no knowledge "
                             "bases configured", type=ErrorType.not_found,
                             param="orq.knowledge_bases[0].knowledge_id", code=ErrorCode.not_found)
        return next(call)
