"""The `inspector` typer app: every command group, attached in one place.

Heavy imports (FastAPI, ONNX Runtime sessions, and torch for `train`) happen inside the
commands, so `inspector --help` stays fast and the server never loads the training stack.
"""

from __future__ import annotations

import typer

from inspector.cli import (
    bench,
    connect,
    dataset,
    demo,
    export,
    inspect,
    model,
    retrain,
    serve,
    signing,
)

app = typer.Typer(
    name="inspector",
    help="Machine-vision defect inspection: train ONNX defect models, judge images, serve them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(inspect.inspect)
inspect.models_app.command("validate")(inspect.models_validate)
inspect.models_app.command("keygen")(signing.keygen)
inspect.models_app.command("sign")(signing.sign)
inspect.models_app.command("verify")(signing.verify)
app.add_typer(inspect.models_app, name="models")
app.command("evaluate")(model.evaluate_cmd)
app.command("calibrate")(model.calibrate_cmd)
app.command("train")(model.train_cmd)
app.command("retrain")(retrain.retrain_cmd)
dataset.dataset_app.command("synth")(dataset.synth_cmd)
dataset.dataset_app.command("export")(dataset.export_cmd)
app.add_typer(dataset.dataset_app, name="dataset")
app.command()(serve.serve)
app.command()(demo.demo)
app.command()(bench.bench)
app.add_typer(serve.keys_app, name="keys")
connect.connect_app.command("folder")(connect.folder)
connect.connect_app.command("stream")(connect.stream)
app.add_typer(connect.connect_app, name="connect")
export.export_app.command("fp16")(export.fp16_cmd)
export.export_app.command("triton")(export.triton_cmd)
app.add_typer(export.export_app, name="export")
