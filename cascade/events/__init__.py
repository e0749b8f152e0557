"""Fresh data: interaction events (validation, the Parquet interaction log, Feast push of the
user's history), catalog upserts with item-tower embeddings, and continual training inputs."""
