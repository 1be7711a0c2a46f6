"""Per-key limits and usage accounting (README, "Limits and usage").

`rules` turns the config into the counters one request is checked against, `memory_store` and
`redis_store` keep those counters (one atomic check-and-update each), `service` admits a request,
finishes it on every path, and turns its usage into metrics and cost.
"""
