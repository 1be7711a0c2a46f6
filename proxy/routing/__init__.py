"""Routing policy: balancing strategies and context-window errors (README, "Routing policy")."""
