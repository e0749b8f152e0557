"""A/B split6: two-tower user tower (see benchmarks/variants/README.md)."""

from cascade.online.stages import QueryTowerStage, load_workflow
from cascade.online.triton import StageContext, StageModel


class TritonPythonModel(StageModel):
    stage_name = "query_tower"

    def build(self, context: StageContext) -> None:
        self.stage = QueryTowerStage(context.export_path("onnx"), load_workflow(context.export_path("workflow")))

    def run(self, inputs):
        return self.run_batch([inputs])[0]

    def run_batch(self, batch):
        queries = self.stage.query_many([(i["user_cat"], i["user_cont"], i["user_lists"]) for i in batch])
        return [{"query": q} for q in queries]
