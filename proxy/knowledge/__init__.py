"""Knowledge bases: orq's knowledge API as a small retrieval service (README, "Knowledge bases").

`records` (what is stored), `scoring` (filters, cosine, fusion), `store` (the storage interface)
with `sqlite` and `postgres` backends, `embed` (a provider's /embeddings), and `service` (tenancy,
ingest and search). Nothing here imports the pipeline; `proxy.pipeline.knowledge` uses the service.
"""
