"""The peer: the same in-process stages behind a plain FastAPI app, the way a team would serve
them without Triton (1 uvicorn worker, HTTP JSON). A standing benchmark for the ensemble's serving
overhead (issue 17); ``benchmarks/peer_compare.py`` runs it beside the ensemble.

    python benchmarks/peer_fastapi.py --export build/exports/demo --port 8080
    curl -s localhost:8080/recommend -H 'content-type: application/json' -d '{"user_id": 42, "top_k": 10}'

The endpoint is ``async def``: the recommender is CPU-bound and not shared between threads (the
Feast SQLite reader, FAISS and ONNX Runtime sessions are used from the event loop only), so one
worker serves one request at a time, like one Triton model instance.
"""


import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def create_app(export: Path) -> Any:  # no `from __future__ import annotations`: FastAPI reads the body model from the real annotation
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field

    from cascade.errors import CascadeError
    from cascade.online.pipeline import InProcessRecommender

    recommender = InProcessRecommender.load(export)
    app = FastAPI(title="cascade peer")

    class RecommendBody(BaseModel):
        user_id: int = Field(ge=0)
        top_k: int = Field(10, ge=1)
        exclude_item_ids: list[int] = Field(default_factory=list)
        explore: float = 0.0
        seed: int | None = None

    @app.exception_handler(CascadeError)
    async def cascade_error(_request: Any, error: CascadeError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=int(error.http_status))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/recommend")
    async def recommend(body: RecommendBody) -> dict[str, Any]:
        r = recommender.recommend(body.user_id, top_k=body.top_k, exclude=body.exclude_item_ids,
                                  explore=body.explore, seed=body.seed)
        return {"item_ids": r.item_ids.tolist(), "scores": r.scores.tolist(),
                "model_version": r.model_version, "degraded": bool(r.degraded), "seed_used": int(r.seed_used)}

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, required=True, help="export root (or its model_repository/)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    uvicorn.run(create_app(args.export), host=args.host, port=args.port, workers=1, log_level="warning",
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
