"""The routing pipeline: one module per stage; `proxy.pipeline.build` lists them in order.

Deliberately empty of imports, so importing one stage does not import them all
(docs/architecture.md).
"""
