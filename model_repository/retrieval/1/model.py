"""retrieval: FAISS search on the CPU, or exact top-k with the item embeddings resident on a GPU
(cascade/online/exact_retrieval.py) -> candidate catalog rows (see config.pbtxt)."""

import numpy as np

from cascade.business.config import BusinessRules
from cascade.online.device import place_stage
from cascade.online.export_layout import ExportLayout
from cascade.online.stages import RetrievalStage
from cascade.online.triton import StageContext, StageModel

EMPTY = np.empty(0, dtype=np.int64)


class TritonPythonModel(StageModel):
    stage_name = "retrieval"

    def build(self, context: StageContext) -> None:
        decision = place_stage(self)
        searcher = None
        if decision.on_gpu:
            from cascade.online.exact_retrieval import ExactSearcher, ExactSearchOptions, embeddings_from_faiss

            options = ExactSearchOptions(dtype=context.parameter("exact_dtype", "float16"))
            searcher = lambda index: ExactSearcher(embeddings_from_faiss(index), decision.torch_device, options)  # noqa: E731
        manifest = ExportLayout.for_model(context.repository).manifest()
        rules = BusinessRules.load(context.export_path("business_rules"))  # the one drop_seen setting
        self.stage = RetrievalStage(context.export_path("index"), manifest.n_candidates, drop_seen=rules.drop_seen,
                                    searcher=searcher)
        self.retrieved = self.counter("cascade_candidates_retrieved_total", "Candidates returned by the retrieval stage")
        self.logger.log_info(f"retrieval: {'exact on ' + decision.torch_device if searcher else 'FAISS on the CPU'}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_batch([inputs])[0]

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """One exact search for the batch's queries on the GPU path; FAISS per request otherwise."""
        rows = self.stage.retrieve_many(
            [i["query"] for i in batch],
            [bool(i["cold_start"].reshape(-1)[0]) for i in batch],
            [i["seen_items"] for i in batch],
            [i.get("exclude_item_ids", EMPTY) for i in batch],
        )
        self.retrieved.increment(sum(len(r) for r in rows))
        return [{"candidate_rows": r.reshape(1, -1)} for r in rows]
