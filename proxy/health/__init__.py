"""Provider health: circuit breakers and load figures (README, "Circuit breakers")."""
