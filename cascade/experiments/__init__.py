"""Experiments between bundles (issue 16): a salted-hash split of users, per-variant metrics,
canaries with guardrails and automatic rollback, outcome reports (docs/DESIGN.md "Experiments")."""
