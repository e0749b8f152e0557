"""candidates: validate the request, Feast online lookup, encode the user, query tower, retrieval
(phases in cascade_phase_seconds{model="candidates"}; see config.pbtxt)."""

import time

import numpy as np

from cascade.business.config import BusinessRules
from cascade.errors import CascadeError
from cascade.features.guard import REASONS, GuardConfig
from cascade.online.device import place_stage
from cascade.online.request import MAX_TOP_K, RecommendRequest, parse_request
from cascade.online.stages import QueryTowerStage, RetrievalStage, UserFeatureStage, load_workflow
from cascade.online.triton import StageContext, StageModel

PHASES = ("validate", "feast", "user_encode", "query_tower", "retrieval")


class TritonPythonModel(StageModel):
    stage_name = "candidates"

    def build(self, context: StageContext) -> None:
        decision = place_stage(self)  # raises (load fails) for a GPU export without a usable GPU
        manifest = context.export_layout.manifest()
        self.max_top_k = min(MAX_TOP_K, manifest.n_candidates)
        workflow = load_workflow(context.export_path("workflow"))
        self.users = UserFeatureStage(context.export_path("feature_repo"), workflow,
                                      reader=context.parameter("feast_reader", "online_read"),
                                      guard=GuardConfig.from_parameters(context.parameter))
        self.query = QueryTowerStage(
            context.export_path("onnx"), workflow,
            intra_op_threads=int(context.parameter("intra_op_threads", "1")),
            device="gpu" if decision.on_gpu else "cpu", device_id=context.device_id,
            allow_cpu_fallback=decision.allow_cpu_fallback,
        )
        searcher = None
        if decision.on_gpu:  # exact top-k with the item embeddings resident on the GPU
            from cascade.online.exact_retrieval import ExactSearcher, ExactSearchOptions, embeddings_from_faiss

            options = ExactSearchOptions(dtype=context.parameter("exact_dtype", "float16"))
            searcher = lambda index: ExactSearcher(embeddings_from_faiss(index), decision.torch_device, options)  # noqa: E731
        # the one drop_seen setting, and max_explore_temperature for validating `explore` here
        rules = BusinessRules.load(context.export_path("business_rules"))
        self.max_explore = rules.max_explore_temperature
        self.retrieval = RetrievalStage(context.export_path("index"), manifest.n_candidates, drop_seen=rules.drop_seen,
                                        searcher=searcher,
                                        feature_repo=context.export_path("feature_repo"),  # index extension
                                        refresh_seconds=float(context.parameter("refresh_seconds", "30")),
                                        candidates_dir=context.export_path("candidates"))  # item-to-item source
        self.logger.log_info(f"candidates: query tower {self.query.model.providers}, retrieval "
                             f"{'exact on ' + decision.torch_device if searcher else 'FAISS on the CPU'}")
        self.cold_start = self.counter("cascade_cold_start_total", "Requests for users unknown to the feature store")
        self.degraded = {  # one labelled series per reason, created at load so they show from the start
            reason: self.counter("cascade_degraded_total",
                                 "Requests answered degraded (popular items), by reason", {"reason": reason})
            for reason in ("cold_start", *REASONS)
        }
        self.retrieved = self.counter("cascade_candidates_retrieved_total", "Candidates returned by retrieval")
        self.clock = self.phases(*PHASES)

    def _warn(self, reason: str | None, error: str) -> None:
        """One log line per reason change or per 10 s: an outage must not flood the log."""
        now = time.monotonic()
        if reason != getattr(self, "_warned_reason", None) or now - getattr(self, "_warned_at", 0.0) > 10.0:
            self._warned_reason, self._warned_at = reason, now
            self.logger.log_warn(f"candidates: degraded answers ({reason}): {error}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.run_batch([inputs])[0]
        if isinstance(result, CascadeError):
            raise result
        return result

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | CascadeError]:
        """Validate each request (a bad one fails alone), then for the valid ones: ONE Feast read,
        ONE workflow transform, ONE query-tower call, and a FAISS search per request (ONE exact
        search for the batch on the GPU path)."""
        clock = self.clock
        clock.start()
        parsed: list[RecommendRequest | CascadeError] = []
        for inputs in batch:
            try:
                parsed.append(parse_request(inputs, self.max_top_k, self.max_explore))
            except CascadeError as error:
                parsed.append(error)
        valid = [p for p in parsed if not isinstance(p, CascadeError)]
        clock.lap("validate")
        if not valid:
            return list(parsed)
        ids = [p.user_id for p in valid]
        features, error, reason = self.users.read_many(ids)  # bounded: budget + circuit breaker
        clock.lap("feast")
        users = self.users.encode_many(ids, features, error, reason)
        clock.lap("user_encode")
        queries = self.query.query_many([(u.cat, u.cont, u.lists) for u in users])
        clock.lap("query_tower")
        merged_of = self.retrieval.retrieve_many_sources(queries, [u.cold_start for u in users],
                                                         [u.seen_items for u in users],
                                                         [p.exclude_item_ids for p in valid],
                                                         [u.recent_items for u in users])
        results: list[dict[str, np.ndarray] | CascadeError] = []
        done = iter(zip(valid, users, merged_of))
        for request in parsed:
            if isinstance(request, CascadeError):
                results.append(request)
                continue
            _, user, merged = next(done)
            rows = merged.rows
            if user.degraded_reason == "cold_start":
                self.cold_start.increment(1)
            if user.degraded_reason:
                self.degraded[user.degraded_reason].increment(1)
            if user.feature_store_error:
                self._warn(user.degraded_reason, user.feature_store_error)
            self.retrieved.increment(len(rows))
            results.append({  # [1, ...]: one request of a batch
                "user_cat": user.cat,
                "user_cont": user.cont,
                "user_lists": user.lists,
                "seen_items": user.seen_items.reshape(1, -1),
                "cold_start": np.array([[user.cold_start]]),
                "candidate_rows": rows.reshape(1, -1),
                "candidate_source": merged.source.reshape(1, -1),  # source bitmask (online/candidates.py)
                "candidate_score": merged.item2item_score.reshape(1, -1),  # item-to-item score
            })
        clock.lap("retrieval")
        return results
