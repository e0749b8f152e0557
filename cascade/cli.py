"""The ``cascade`` command line. Each command group lives beside the code it drives; this file
only wires them together. Heavy libraries (torch, feast, faiss) are imported inside commands so
``cascade --help`` stays fast."""

from __future__ import annotations

import typer

from cascade.events.cli import app as events_app
from cascade.events.items_cli import app as items_app
from cascade.events.retrain_cli import retrain
from cascade.features.cli import app as features_app
from cascade.preprocessing.cli import app as preprocess_app
from cascade.serving.cli import serve
from cascade.bundles.cli import bundles, release, rollback, rollout, verify
from cascade.experiments.cli import app as experiment_app
from cascade.workflows.data_cli import app as data_app
from cascade.workflows.train_cli import app as train_app
from cascade.workflows.evaluate_cli import evaluate
from cascade.workflows.export_cli import export
from cascade.workflows.demo import demo
from cascade.client_cli import recommend
from cascade.loadtest_cli import loadtest
from cascade.bundles.signing_cli import keys_app, sign

app = typer.Typer(
    name="cascade",
    help="Multi-stage recommender served by one Triton Inference Server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data", help="Generate or import a dataset (canonical folder + temporal split).")
app.add_typer(preprocess_app, name="preprocess", help="Fit and apply preprocessing workflows.")
app.add_typer(features_app, name="features", help="Feast feature repo: generate, apply, materialize.")
app.add_typer(events_app, name="events", help="Interaction events into a running server (push, ingest).")
app.add_typer(items_app, name="items", help="Catalog items: add or update without retraining.")
app.add_typer(experiment_app, name="experiment", help="A/B experiments between bundles: start, share, status, stop, report.")
app.add_typer(train_app, name="train", help="Train retrieval and ranking models.")
app.command("evaluate")(evaluate)
app.command("export")(export)
app.command("serve")(serve)
app.command("retrain")(retrain)
app.command("rollout")(rollout)
app.command("rollback")(rollback)
app.command("bundles")(bundles)
app.command("release")(release)
app.command("verify")(verify)
app.command("recommend")(recommend)
app.command("demo")(demo)
app.command("loadtest")(loadtest)
app.add_typer(keys_app, name="keys", help="Ed25519 keys that sign exports.")
app.command("sign")(sign)


if __name__ == "__main__":  # pragma: no cover
    app()
