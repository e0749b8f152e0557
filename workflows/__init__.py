"""Offline pipelines: data generation/import, fit, train, index, Feast, evaluate, export."""
