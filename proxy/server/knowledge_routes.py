"""HTTP handlers of orq's knowledge API (`/v2/knowledge…`; README, "Knowledge bases").

The same bearer keys as the router; the key's name is the tenant. Every answer is JSON (204 for
deletes, as the orq SDK expects) and every error is in our error shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from proxy.api import knowledge as api
from proxy.core.errors import ErrorCode, ErrorType, ProxyError, bad_request
from proxy.knowledge.records import (
    Chunk,
    Datasource,
    KnowledgeBase,
    Settings,
    new_id,
    now,
)
from proxy.knowledge.service import Hit, KnowledgeService, Rerank, vector_of
from proxy.server.handlers import error_response, request_id
from proxy.server.state import SERVER

Op = Callable[[web.Request, KnowledgeService, str], Awaitable[Any]]
_encode = msgspec.json.encode
NO_CONTENT = object()


def _service(request: web.Request) -> KnowledgeService:
    service = request.app[SERVER].runtime.knowledge
    if service is None:
        raise ProxyError(404, "Knowledge bases are not enabled: add a `knowledge:` section to the config",
                         type=ErrorType.not_found, code=ErrorCode.not_found)
    return service


def endpoint(op: Op) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        rid = request_id(request)
        server = request.app[SERVER]
        runtime = server.runtime
        try:
            key = runtime.keys.authenticate(request.headers.get("Authorization"))
            result = await op(request, _service(request), key.name)
        except ProxyError as err:
            return error_response(err, rid)
        except web.HTTPRequestEntityTooLarge:
            limit = runtime.config.server.max_body_bytes
            return error_response(ProxyError(413, f"Request body is larger than {limit} bytes (server.max_body_bytes)",
                                             code=ErrorCode.payload_too_large), rid)
        except Exception:
            server.logger.exception("unhandled error", request_id=rid, path=request.path)
            return error_response(ProxyError(500, "Internal error; the request id is in the logs",
                                             type=ErrorType.internal, code=ErrorCode.internal_error), rid)
        if result is NO_CONTENT:
            return web.Response(status=204, headers={"x-request-id": rid})
        return web.Response(body=_encode(result), content_type="application/json", headers={"x-request-id": rid})
    return handler


# -- rendering (orq's shapes) ------------------------------------------------------------------------------
def _settings(s: Settings) -> dict[str, Any]:
    return {"retrieval_type": s.retrieval_type, "top_k": s.top_k, "threshold": s.threshold,
            "rerank_config": s.rerank_config, "agentic_rag_config": s.agentic_rag_config}


def render_base(kb: KnowledgeBase) -> dict[str, Any]:
    return {"_id": kb.id, "key": kb.key, "type": "internal", "created": kb.created, "updated": kb.updated,
            "domain_id": "switchyard", "model": kb.embedding_model or "", "description": kb.description,
            "path": kb.path, "created_by_id": None, "updated_by_id": None,
            "retrieval_settings": _settings(kb.settings)}


def render_datasource(ds: Datasource) -> dict[str, Any]:
    return {"_id": ds.id, "display_name": ds.display_name, "description": ds.description, "status": "completed",
            "created": ds.created, "updated": ds.updated, "knowledge_id": ds.knowledge_id,
            "chunks_count": ds.chunks_count}


def render_chunk(c: Chunk) -> dict[str, Any]:
    return {"_id": c.id, "text": c.text, "enabled": c.enabled, "status": c.status, "created": c.created,
            "updated": c.updated, "metadata": c.metadata}


def render_hit(hit: Hit, options: api.SearchOptions | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": hit.chunk.id, "text": hit.chunk.text}
    if options and options.include_vectors:
        vector = vector_of(hit.chunk)
        if vector is not None:
            out["vector"] = vector
    if options and options.include_metadata:
        out["metadata"] = hit.chunk.metadata
    if options and options.include_scores:
        scores: dict[str, float] = {"search_score": hit.score}
        if hit.rerank_score is not None:
            scores["rerank_score"] = hit.rerank_score
        out["scores"] = scores
    return out


def _list(items: list[Any], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more}


# -- query parameters -------------------------------------------------------------------------------------------
def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise bad_request(f"`limit` must be an integer from 1 to {most}", "limit") from None
    if not 1 <= value <= most:
        raise bad_request(f"`limit` must be an integer from 1 to {most}", "limit")
    return value


def _page(items: list[Any], request: web.Request, limit: int) -> tuple[list[Any], bool]:
    """Cursor paging over a list sorted by id (ids sort by creation time)."""
    after, before = request.query.get("starting_after"), request.query.get("ending_before")
    if after:
        items = [i for i in items if i.id > after]
    if before:
        items = [i for i in items if i.id < before]
        if not after:
            return items[-limit:], len(items) > limit
    return items[:limit], len(items) > limit


# -- knowledge bases -----------------------------------------------------------------------------------------------
def _new_settings(raw: api.RetrievalSettingsIn | None, path: str, base: Settings | None = None) -> Settings:
    settings = msgspec.structs.replace(base) if base else Settings()
    if raw is None:
        return settings
    if raw.rerank_config is not msgspec.UNSET:
        settings.rerank_config = msgspec.to_builtins(raw.rerank_config)
    if raw.agentic_rag_config is not msgspec.UNSET:
        settings.agentic_rag_config = msgspec.to_builtins(raw.agentic_rag_config)
    if raw.retrieval_type is not None:
        settings.retrieval_type = raw.retrieval_type
    if raw.top_k is not None:
        settings.top_k = raw.top_k
    if raw.threshold is not None:
        settings.threshold = raw.threshold
    return settings


def _check_settings(service: KnowledgeService, settings: Settings) -> None:
    if settings.rerank_config:
        service.check_model(settings.rerank_config["rerank_model"], "retrieval_settings.rerank_config.rerank_model")
    if settings.agentic_rag_config:
        service.check_model(settings.agentic_rag_config["model"], "retrieval_settings.agentic_rag_config.model")


async def list_bases(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    limit = _limit(request, 25, 300)
    bases = await service.visible(tenant)
    search = request.query.get("search")
    if search:
        bases = [kb for kb in bases if search.lower() in kb.key.lower()]
    page, more = _page(bases, request, limit)
    return _list([render_base(kb) for kb in page], more)


async def create_base(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    body = api.decode(await request.read(), api.CreateKnowledge)
    service.check_model(body.embedding_model, "embedding_model")
    settings = _new_settings(body.retrieval_settings, "retrieval_settings")
    _check_settings(service, settings)
    if any(kb.key == body.key for kb in await service.visible(tenant)):
        raise ProxyError(409, f"A knowledge base with key {body.key!r} already exists", param="key",
                         code="conflict")
    stamp = now()
    kb = KnowledgeBase(id=new_id("kb"), key=body.key, owner=tenant, embedding_model=body.embedding_model,
                       settings=settings, created=stamp, updated=stamp, description=body.description,
                       path=body.path)
    await service.store.put_base(kb)
    return render_base(kb)


async def _own(request: web.Request, service: KnowledgeService, tenant: str) -> KnowledgeBase:
    kb = await service.find(tenant, request.match_info["knowledge_id"], "knowledge_id")
    return kb


def _mutable(kb: KnowledgeBase) -> None:
    if kb.declared:
        raise ProxyError(403, f"Knowledge base {kb.key!r} is declared in the config: change it there",
                         type=ErrorType.permission, param="knowledge_id", code=ErrorCode.insufficient_scope)


async def get_base(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    return render_base(await _own(request, service, tenant))


async def update_base(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    kb = await _own(request, service, tenant)
    body = api.decode(await request.read(), api.UpdateKnowledge)
    _mutable(kb)
    kb.settings = _new_settings(body.retrieval_settings, "retrieval_settings", kb.settings)
    _check_settings(service, kb.settings)
    if body.description is not None:
        kb.description = body.description
    if body.path is not None:
        kb.path = body.path
    kb.updated = now()
    await service.store.put_base(kb)
    return render_base(kb)


async def delete_base(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    kb = await _own(request, service, tenant)
    _mutable(kb)
    await service.store.delete_base(kb.id)
    return NO_CONTENT


async def search(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    kb = await _own(request, service, tenant)
    body = api.decode(await request.read(), api.SearchRequest)
    flt = api.search_filter(body.filter_by, "filter_by")
    rerank = None
    if body.rerank_config is not None:
        service.check_model(body.rerank_config.model, "rerank_config.model")
        rerank = Rerank(body.rerank_config.model, body.rerank_config.threshold, body.rerank_config.top_k)
    hits = await service.search(kb, body.query, top_k=body.top_k, threshold=body.threshold,
                                search_type=body.search_type, flt=flt, rerank=rerank,
                                rewrite_model=body.agentic_rag_config.model if body.agentic_rag_config else None,
                                request_id=request_id(request))
    return {"matches": [render_hit(hit, body.search_options) for hit in hits]}


# -- datasources ---------------------------------------------------------------------------------------------------
async def _datasource(request: web.Request, service: KnowledgeService, tenant: str) -> tuple[KnowledgeBase, Datasource]:
    kb = await _own(request, service, tenant)
    ds_id = request.match_info["datasource_id"]
    for ds in await service.store.datasources(kb.id):
        if ds.id == ds_id:
            return kb, ds
    raise ProxyError(404, f"Datasource {ds_id!r} not found", type=ErrorType.not_found, param="datasource_id",
                     code=ErrorCode.not_found)


async def list_datasources(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    kb = await _own(request, service, tenant)
    limit = _limit(request, 10, 50)
    found = await service.store.datasources(kb.id)
    q = request.query.get("q")
    if q:
        found = [ds for ds in found if q.lower() in ds.display_name.lower()]
    page, more = _page(found, request, limit)
    return _list([render_datasource(ds) for ds in page], more)


async def create_datasource(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    kb = await _own(request, service, tenant)
    body = api.decode(await request.read(), api.CreateDatasource)
    if body.file_id is not None:
        raise ProxyError(400, "`file_id` is not supported: create chunks through the chunks endpoint",
                         param="file_id", code="unsupported_parameter")
    stamp = now()
    ds = Datasource(id=new_id("ds"), knowledge_id=kb.id, display_name=body.display_name or "Untitled",
                    created=stamp, updated=stamp, description=body.description, metadata=body.metadata)
    await service.store.put_datasource(ds)
    return render_datasource(ds)


async def get_datasource(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    return render_datasource((await _datasource(request, service, tenant))[1])


async def update_datasource(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    _, ds = await _datasource(request, service, tenant)
    body = api.decode(await request.read(), api.UpdateDatasource)
    if body.display_name is not None:
        ds.display_name = body.display_name
    if body.description is not None:
        ds.description = body.description
    ds.updated = now()
    await service.store.put_datasource(ds)
    return render_datasource(ds)


async def delete_datasource(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    _, ds = await _datasource(request, service, tenant)
    await service.store.delete_datasource(ds.id)
    return NO_CONTENT


# -- chunks ----------------------------------------------------------------------------------------------------------
async def create_chunks(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    kb, ds = await _datasource(request, service, tenant)
    batch = api.decode(await request.read(), api.ChunkBatch)
    vectors = await service.vectors(kb, [c.text for c in batch], [c.embedding for c in batch])
    stamp = now()
    chunks = [Chunk(id=new_id("ch"), knowledge_id=kb.id, datasource_id=ds.id, text=c.text,
                    metadata=dict(c.metadata or {}), vector=v, created=stamp, updated=stamp)
              for c, v in zip(batch, vectors, strict=True)]
    await service.store.insert_chunks(chunks)
    return [render_chunk(c) for c in chunks]


async def list_chunks(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    _, ds = await _datasource(request, service, tenant)
    limit = _limit(request, 10, 200)
    statuses = request.query.getall("status", []) or None
    if statuses and len(statuses) == 1 and "," in statuses[0]:
        statuses = statuses[0].split(",")
    page = await service.store.list_chunks(ds.id, limit, request.query.get("starting_after"),
                                           request.query.get("ending_before"), request.query.get("q"), statuses)
    return _list([render_chunk(c) for c in page.items], page.has_more)


async def _chunk(request: web.Request, service: KnowledgeService, tenant: str) -> tuple[KnowledgeBase, Chunk]:
    kb, ds = await _datasource(request, service, tenant)
    chunk_id = request.match_info["chunk_id"]
    chunk = await service.store.chunk(ds.id, chunk_id)
    if chunk is None:
        raise ProxyError(404, f"Chunk {chunk_id!r} not found", type=ErrorType.not_found, param="chunk_id",
                         code=ErrorCode.not_found)
    return kb, chunk


async def get_chunk(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    return render_chunk((await _chunk(request, service, tenant))[1])


async def update_chunk(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    kb, chunk = await _chunk(request, service, tenant)
    body = api.decode(await request.read(), api.UpdateChunk)
    if body.metadata is not None:
        chunk.metadata = dict(body.metadata)
    if body.embedding is not None or (body.text is not None and body.text != chunk.text):
        # New text re-embeds unless a vector comes with it.
        text = body.text if body.text is not None else chunk.text
        (chunk.vector,) = await service.vectors(kb, [text], [body.embedding])
    if body.text is not None:
        chunk.text = body.text
    chunk.updated = now()
    await service.store.update_chunk(chunk)
    return render_chunk(chunk)


async def delete_chunk(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    _, chunk = await _chunk(request, service, tenant)
    await service.store.delete_chunks(chunk.datasource_id, [chunk.id])
    return NO_CONTENT


async def delete_chunks(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    _, ds = await _datasource(request, service, tenant)
    body = api.decode(await request.read(), api.DeleteChunks)
    deleted = await service.store.delete_chunks(ds.id, body.chunk_ids)
    failed = [cid for cid in body.chunk_ids if cid not in set(deleted)]
    out: dict[str, Any] = {"deleted_count": len(deleted)}
    if failed:
        out["failed_ids"] = failed
    return out


async def count_chunks(request: web.Request, service: KnowledgeService, tenant: str) -> Any:
    _, ds = await _datasource(request, service, tenant)
    return {"count": ds.chunks_count}


KB = "/v2/knowledge/{knowledge_id}"
DS = KB + "/datasources/{datasource_id}"
ROUTES: list[tuple[str, str, Op]] = [
    ("GET", "/v2/knowledge", list_bases),
    ("POST", "/v2/knowledge", create_base),
    ("GET", KB, get_base),
    ("PATCH", KB, update_base),
    ("DELETE", KB, delete_base),
    ("POST", KB + "/search", search),
    ("GET", KB + "/datasources", list_datasources),
    ("POST", KB + "/datasources", create_datasource),
    ("GET", DS, get_datasource),
    ("PATCH", DS, update_datasource),
    ("DELETE", DS, delete_datasource),
    ("GET", DS + "/chunks", list_chunks),
    ("POST", DS + "/chunks", create_chunks),
    ("DELETE", DS + "/chunks", delete_chunks),
    ("POST", DS + "/chunks/count", count_chunks),
    ("GET", DS + "/chunks/{chunk_id}", get_chunk),
    ("PATCH", DS + "/chunks/{chunk_id}", update_chunk),
    ("DELETE", DS + "/chunks/{chunk_id}", delete_chunk),
]


def add_routes(app: web.Application) -> None:
    for method, path, op in ROUTES:
        app.router.add_route(method, path, endpoint(op))


__all__ = ["add_routes"]
