"""Bundles: one export = one bundle (manifest of file digests, signature, rollout)."""
