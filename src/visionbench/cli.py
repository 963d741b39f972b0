"""`visionbench ...` commands: a thin layer over the library.

Every user error ends with a one-line message on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException

from visionbench import display
from visionbench.errors import InterruptedRunError, UserError
from visionbench.version import __version__

if TYPE_CHECKING:
    from visionbench.orchestrate import RunResult
    from visionbench.predict.shift import BatchShift
    from visionbench.rundir import ImageQuality, Inspection, Leaderboard, ShiftDocument

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help text is plain: `pip install 'visionbench[app]'` must not lose `[app]` as markup.
    rich_markup_mode=None,
    help="Train, evaluate and compare image classifiers; say with evidence which to trust.",
)
# Without markup: paths, class and model names are printed as they are (a `[/]` in a path
# is text); styles are given explicitly.
stdout = Console(markup=False)
stderr = Console(stderr=True, markup=False)

ConfigArg = Annotated[
    str, typer.Argument(help="A YAML config, or a built-in recipe name such as 'quickstart'.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config key, e.g. --set data.path=/data/mri (repeatable)."
    ),
]


def _version(value: bool) -> None:
    if value:
        stdout.print(f"visionbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """visionbench: one YAML config -> data, models, training, evaluation and a report."""


@app.command()
def inspect(
    config: Annotated[
        str, typer.Argument(help="A YAML config, a built-in recipe name such as 'quickstart', "
                            "or a finished run folder (its label issues).")
    ] = "quickstart",
    set_: SetOption = None,
    model: Annotated[
        str | None, typer.Option("--model", help="With a run folder: whose out-of-sample "
                                 "predictions score the labels (default: the recommended).")
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="With a run folder: `val` (the images scored on "
                          "validation or out of fold) or `test` (a diagnosis of the test "
                          "labels).")
    ] = "val",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for charts and data.json (default: <output.dir>/<name>/inspect)."
        ),
    ] = None,
) -> None:
    """Two jobs, by what is given. A CONFIG (or recipe): the dataset's counts, image
    statistics, corrupt files, duplicates, image-quality issues and class variance. A
    finished RUN_DIR: the images whose label its model disputes (cleanlab), with --model
    and --split."""
    if Path(config).is_dir():
        if split not in ("val", "test"):
            raise UserError(f"--split {split}: write val or test")
        _inspect_run(Path(config), model, split, as_json)
        return
    from visionbench.config import load_config

    cfg = load_config(config, set_ or [])
    from visionbench.data.cache import cache_usage
    from visionbench.data.dataset import prepare_data
    from visionbench.data.inspect import inspect_data
    from visionbench.provenance import save_config
    from visionbench.rundir import RunFolder

    data = prepare_data(cfg.data)
    folder = out or cfg.output.dir / str(cfg.output.name) / "inspect"
    inspection = inspect_data(data, folder)
    # An inspection folder holds the data part of a run folder.
    RunFolder(folder).write(data.record)
    shift = cfg.evaluate.shift
    measured = None
    if shift is not None:
        from visionbench.orchestrate.shift import measure_shift
        from visionbench.orchestrate.unfamiliar import embed_splits
        from visionbench.rundir import ShiftDocument

        embedded = embed_splits(data, shift.images, cfg.train.seed, cfg.train.progress,
                                cfg.train.device)
        measure_shift(RunFolder(folder), data, embedded, shift, cfg.train.seed)
        measured = RunFolder(folder).read(ShiftDocument)
    save_config(cfg, folder)
    usage = cache_usage()
    if as_json:
        report = {**inspection.model_dump(mode="json", exclude_unset=True,
                                          exclude={"schema_version", "checksum"}),
                  "cache_usage": vars(usage), "output": str(folder)}
        if shift is not None:
            report["shift"] = measured.model_dump(mode="json") if measured else None
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        _print_inspection(inspection, measured)
        stdout.print(f"decode cache: {usage.root} ({usage.entries} decoded dataset(s), "
                     f"{display.megabytes(usage.bytes)}; `visionbench cache clear` empties "
                     "it)", soft_wrap=True)
        stdout.print(f"charts and data.json in {folder}", soft_wrap=True)


cache_app = typer.Typer(no_args_is_help=True, help="The decode cache: where it is, how big, "
                        "and clearing it (set its place with $VISIONBENCH_CACHE).")
app.add_typer(cache_app, name="cache")


@cache_app.command(name="info")
def cache_info() -> None:
    """Where the decode cache is and how much it holds."""
    from visionbench.data.cache import cache_usage

    usage = cache_usage()
    stdout.print(f"cache: {usage.root}: {usage.entries} decoded dataset(s), "
                 f"{display.megabytes(usage.bytes)}", soft_wrap=True)


@cache_app.command(name="clear")
def cache_clear() -> None:
    """Delete every decoded dataset (the next run decodes its images again)."""
    from visionbench.data.cache import clear_cache

    freed = clear_cache()
    stdout.print(f"cache: {freed.root}: removed {freed.entries} decoded dataset(s), "
                 f"{display.megabytes(freed.bytes)} freed", soft_wrap=True)


@app.command(name="run")
def run_command(
    config: ConfigArg = "quickstart",
    set_: SetOption = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Train only this model (repeatable).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Resume an interrupted run folder: finished models are kept, "
                     "interrupted ones continue from their last checkpoint."),
    ] = None,
    retrain: Annotated[
        list[str] | None,
        typer.Option("--retrain", help="With --resume: train this model again from scratch "
                     "(its config changed), keeping the others (repeatable)."),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option("--nproc", min=2, help="Train each model with N processes "
                     "(DistributedDataParallel: one GPU each, or CPU processes); the same as "
                     "--set train.distributed.processes=N."),
    ] = None,
) -> None:
    """Train every model of a config and write the run folder."""
    from visionbench.config import load_config

    if retrain and resume is None:
        raise UserError("--retrain needs --resume RUN_DIR")
    extra = [f"train.distributed={{processes: {nproc}}}"] if nproc else []
    cfg = load_config(config, [*(set_ or []), *extra])
    # Training's modules load once the config is known to be good.
    from visionbench.orchestrate import run_config

    _finish(run_config(cfg, resume=resume, only=model, retrain=retrain, report=_report))


@app.command(name="continue")
def continue_(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `visionbench run`.")],
    epochs: Annotated[int, typer.Option(min=1, help="How many more epochs to train.")],
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Continue only this model (repeatable).")
    ] = None,
) -> None:
    """Continue training finished models of a run for more epochs (in place)."""
    from visionbench.orchestrate import continue_run

    _finish(continue_run(run_dir, epochs, model, report=_report))


def _report(line: str) -> None:
    stderr.print(printable(line), highlight=False, soft_wrap=True, markup=False)


def printable(text: str) -> str:
    r"""`text` with control characters (a file name's terminal escape codes, say) written
    as escapes, so printing a name cannot move the cursor, recolour or retitle a terminal.

    Example:
        >>> printable("scan\x1b[2J.png")
        'scan\\x1b[2J.png'
    """
    return "".join(c if c.isprintable() or c == "\n" else ascii(c)[1:-1] for c in text)


def _finish(result: RunResult) -> None:
    if result.board is not None:
        _print_board(result.board, result.folder)
        _next_steps(result.folder, result.board.recommended)
    if result.exit_code:
        failed = result.failed
        kept = ("nothing to predict with" if len(failed) >= len(result.models)
                else "the others' results are kept")
        stderr.print(Text("error: ", "red") + f"{len(failed)} model(s) failed: "
                     f"{display.names(failed)} (reasons in {result.folder}/run.json); {kept}",
                     highlight=False, soft_wrap=True)
        raise typer.Exit(result.exit_code)


def _next_steps(folder: Path, recommended: str | None) -> None:
    """What to do with the run now, as commands to copy (the MRI study's lancez-moi.sh)."""
    from visionbench.rundir import RunFolder

    report = RunFolder(folder).report_file.resolve()
    lines = ["next:", f"  open the report:     {report.as_uri()}"]
    if recommended is not None:
        lines.append(f"  start the app:       visionbench app {folder}")
        lines.append(f"  predict new images:  visionbench predict {folder} IMAGES_OR_FOLDER "
                     f"[--sort-into SORTED_DIR]   (model {recommended})")
    stderr.print("\n".join(lines), highlight=False, soft_wrap=True, markup=False)


SHORT = {"balanced_accuracy": "bal. acc", "roc_auc_macro": "AUC", "log_loss": "log loss",
         "accuracy": "accuracy"}
SHORT_MARKS = {"recommended": "recommended", "no significant difference": "n.s.",
               "worse on test": "worse", "better on test": "better"}


def _print_board(board: Leaderboard, folder: Path) -> None:
    from visionbench.evaluate.leaderboard import board_table, recommendation_sentence

    primary = board.primary_metric
    level = display.level(board.confidence)
    header, rows = board_table(board)
    table = Table(title=f"leaderboard: {folder}", caption=(
        f"test {primary} with its {level} bootstrap interval; "
        f"{recommendation_sentence(board)} vs rec.: paired bootstrap test of {primary} on "
        f"test against the recommended model (alpha {board.alpha})"))
    # A terminal is narrow: short column names and marks, the error cut.
    short = {**SHORT, f"{primary} [{level} CI]": f"{SHORT.get(primary, primary)} [{level} CI]",
             f"validation {primary}": f"val {SHORT.get(primary, primary)}",
             "missed positives": "missed +", "parameters": "params", "vs recommended": "vs rec."}
    for column in header:
        table.add_column(short.get(column, column),
                         justify="left" if column in ("model", "status", "vs recommended")
                         else "right")
    for cells in rows:
        mark = cells[-1]
        table.add_row(*cells[:-1], SHORT_MARKS.get(mark, mark[:60]),
                      style="italic" if cells[1] == "reference" else None)
    # Piped output has no width to fit; rich would squeeze the table into 80 columns.
    (stdout if stdout.is_terminal else Console(width=140, markup=False)).print(table)


@app.command(name="evaluate")
def evaluate_command(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A run folder written by `visionbench run`.")
    ] = None,
    set_: SetOption = None,
    external: Annotated[
        Path | None,
        # `--model` names a model of the run everywhere else; it stays an alias here so the
        # commands written before keep working.
        typer.Option("--external", "--model", help="Evaluate a model trained elsewhere "
                     "(.onnx, or a TorchScript .pt) on the data of --data (--model: its "
                     "former name, kept as an alias)."),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="The config whose data (and evaluate) to use.")
    ] = None,
    name: Annotated[str, typer.Option(help="The external model's name in the run.")] = "external",
) -> None:
    """Recompute every metric of a run from its saved predictions, or evaluate an external
    model (with its preprocessing under models.NAME.input, e.g. --set
    models.external.input.layout=nhwc) into a new run folder."""
    from visionbench.config import load_config
    from visionbench.evaluate.leaderboard import evaluate_folder
    from visionbench.orchestrate import run_config
    from visionbench.provenance import save_config
    from visionbench.report.build import write_report
    from visionbench.rundir import RunFolder

    if external is not None:
        if data is None or run_dir is not None:
            raise UserError("--external needs --data CONFIG (and no run folder)")
        from visionbench.orchestrate.export import evaluation_overrides

        # An export's own card says how its graph is fed; the user's --set still wins.
        cfg = load_config(data, [f"models.{name}.external={external}",
                                 *evaluation_overrides(external, name), *(set_ or [])])
        _finish(run_config(cfg, only=[name], report=_report))
        return
    if run_dir is None:
        raise UserError("give a run folder, or use --external FILE --data CONFIG")
    run = RunFolder(run_dir).check()
    cfg = load_config(run.config_file, set_ or [])
    # Only the models this folder ran: a run made with --model leaves the others untrained.
    ran = list(run.outcomes(list(cfg.models)))
    if not ran:
        raise UserError(f"no model of {run_dir} has run yet (no model has metrics)")
    board = evaluate_folder(run, cfg.evaluate, ran, "auto")
    if set_:
        # The folder's config says how it was evaluated from now on.
        save_config(cfg, run.path)
    _print_board(board, run_dir)
    # The report shows the same numbers as the leaderboard just written.
    stdout.print(f"report: {write_report(run, 'auto')}", soft_wrap=True, highlight=False)


@app.command(name="report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `visionbench run`.")],
) -> None:
    """Rebuild report.html from the run folder alone (no retraining, no data needed)."""
    from visionbench.report.build import write_report
    from visionbench.rundir import Leaderboard, RunFolder

    run = RunFolder(run_dir).check()
    if not run.has(Leaderboard):
        raise UserError(f"{run_dir} has no leaderboard: not a finished run folder "
                        "(run `visionbench evaluate` on it first)")
    stdout.print(f"report: {write_report(run, 'auto')}")


@app.command(name="predict")
def predict_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `visionbench run`.")],
    images: Annotated[list[str], typer.Argument(
        help="Image files, folders (searched recursively), glob patterns or CSV files with a "
        "'path' column.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Which model of the run (default: the one the report recommends).")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the CSV (or JSON) here instead of standard output.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list instead of CSV.")] = False,
    margin: Annotated[float | None, typer.Option(
        "--margin", help="Flag as uncertain below this top-class probability (default: "
        "chosen on validation).", min=0.0, max=1.0)] = None,
    sort_into: Annotated[Path | None, typer.Option(
        "--sort-into", help="Copy each file into DIR/<class>/ (images unlike the training "
        "images into DIR/_unfamiliar/, uncertain ones into DIR/_uncertain/, unreadable ones "
        "into DIR/_unreadable/), with a manifest.")] = None,
    move: Annotated[bool, typer.Option("--move", help="With --sort-into: move, not copy.")
                    ] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="With --sort-into: show the plan, touch nothing.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    allow_outside: Annotated[bool, typer.Option(
        "--allow-outside", help="Let a CSV's 'path' column name files outside the CSV's "
        "folder.")] = False,
    check_shift: Annotated[bool, typer.Option(
        "--check-shift", help="Also test whether these images come from the distribution "
        "of the training images (the run's shift test against its training sample), and "
        "say which image properties moved.")] = False,
) -> None:
    """Apply a trained model to new images: class, probabilities, the positive reading at the
    validation threshold, an uncertainty flag; optionally sort the files by class."""
    from visionbench.predict import expand_inputs, load, predict_files
    from visionbench.predict.shift import BatchShift
    from visionbench.predict.sort import SKIPPED, counts, sort_files
    from visionbench.predict.stream import RowWriter

    if (move or dry_run) and sort_into is None:
        raise UserError("--move and --dry-run go with --sort-into DIR")
    predictor = load(run_dir, model)
    # Refused before any image is read: a run without a training sample, or an export.
    shift = BatchShift(predictor) if check_shift else None
    if margin is not None:
        predictor.margin, predictor.margin_note = margin, f"uncertain below {margin} (--margin)"
    files = expand_inputs(images, allow_outside=allow_outside)
    _report(f"predict: {len(files):,} file(s) with model {predictor.name}; "
            f"{predictor.margin_note}")
    for note in predictor.notes:
        _report(f"note: {note}")
    # Rows are written as they come; only sorting needs them all (the plan and manifest).
    predictions, unreadable, skipped = [], 0, 0
    with _text_output(out) as handle:
        writer = RowWriter(handle, predictor, as_json)
        for prediction in predict_files(predictor, files, batch=batch_size,
                                        observe=shift.add if shift is not None else None):
            writer.write(prediction)
            skipped += prediction.skipped
            unreadable += prediction.error is not None and not prediction.skipped
            if sort_into is not None:
                predictions.append(prediction)
        writer.close()
    if out is not None:
        _report(f"predictions: {out}")
    if skipped:
        _report(f"{skipped} file(s) are not images by their name and were skipped (listed in "
                "the error column; a sort leaves them where they are)")
    if unreadable:
        _report(f"{unreadable} file(s) could not be read; their reason is in the error column")
    if shift is not None:
        _report_shift(shift)
    if sort_into is not None:
        placements, manifest = sort_files(predictions, sort_into, predictor.classes, move=move,
                                          dry_run=dry_run)
        verb = "would go" if dry_run else ("moved" if move else "copied")
        for folder, count in counts(placements).items():
            _report(f"{count:>7,}  left where they are (not images, links, devices or "
                    "FIFOs: the manifest says why)" if folder == SKIPPED
                    else f"{count:>7,}  {verb} to {sort_into / folder}")
        if dry_run:
            for placement in placements[:20]:
                _report(f"  {placement.prediction.source} -> "
                        f"{placement.destination or placement.skipped}")
        else:
            _report(f"manifest: {manifest}")


def _report_shift(shift: BatchShift) -> None:
    """The verdict of `predict --check-shift` and the properties that moved most."""
    outcome = shift.result()
    _report(f"shift: {shift.describe(outcome, properties=False)}")
    for row in outcome.properties[:3]:
        _report(f"  {row.name}: median {row.other[1]:.3g} here, {row.reference[1]:.3g} in "
                f"training (distance {row.distance:.2f}{', moved' if row.moved else ''})")


@contextlib.contextmanager
def _text_output(out: Path | None) -> Iterator[TextIO]:
    """Standard output, or `out` written atomically (whole or not at all)."""
    if out is None:
        yield sys.stdout
        return
    from visionbench.fileio import atomic_path

    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        yield handle


@app.command(name="export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `visionbench run`.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Which model of the run (default: the one the report recommends).")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="The export folder (default: RUN_DIR/export/<model>).")] = None,
) -> None:
    """The model as ONNX (uint8 images in, probabilities out) with its card model.json,
    checked against PyTorch on the run's test images."""
    from visionbench.orchestrate.export import export_model
    from visionbench.rundir import ExportCard, ExportFolder

    folder = ExportFolder(export_model(run_dir, model, out, report=_report))
    parity = folder.require(ExportCard).parity
    assert parity is not None, "export writes its parity check"
    stdout.print(f"export: {folder.path} (parity on {parity.images} test images: largest "
                 f"probability difference {parity.max_abs_difference:.1e}, top-1 agreement "
                 f"{parity.top1_agreement:.4f})", soft_wrap=True, highlight=False)


@app.command(name="app")
def app_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `visionbench run`.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="The model selected at first (default: the one the report "
        "recommends); the others stay a click away.")] = None,
    host: Annotated[str, typer.Option(
        "--host", help="The address to listen on: 127.0.0.1 keeps the app on this machine; "
        "0.0.0.0 opens it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8501,
) -> None:
    """A web app on the run: drop images and read each one's class, probabilities, positive
    reading, uncertainty, explanation and training-copy flag; the leaderboard and report.
    Fully offline. Needs the app extra: pip install 'visionbench[app]'."""
    from visionbench.app.launch import serve

    code = serve(run_dir, model, host, port, announce=_report)
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise typer.Exit(code)


@app.command(name="lr-find")
def lr_find_command(
    config: ConfigArg,
    model: Annotated[str, typer.Option("--model", help="Which model of the config.")],
    set_: SetOption = None,
    steps: Annotated[int, typer.Option(min=10, help="Training steps of the sweep.")] = 200,
    start: Annotated[float, typer.Option(help="The first learning rate.")] = 1e-7,
    end: Annotated[float, typer.Option(help="The last learning rate.")] = 10.0,
) -> None:
    """Sweep the learning rate over a few hundred steps and draw the loss against it, with
    the rate where it falls fastest marked: a hint to read off the picture."""
    from visionbench.config import load_config

    cfg = load_config(config, set_ or [])
    from visionbench.orchestrate.lr_find import lr_find

    range_test = lr_find(cfg, model, steps, start, end)
    curve = range_test.curve
    ended = " (stopped early: the loss diverged)" if curve.stopped_early else ""
    stdout.print(f"lr-find: {len(curve.rates)} steps from {curve.rates[0]:.2g} to "
                 f"{curve.rates[-1]:.2g}{ended}")
    stdout.print(f"picture: {range_test.picture}")
    stdout.print(f"numbers: {range_test.record}")
    if range_test.setting is None:
        stdout.print("no suggestion: the loss never fell; try a wider range (--start, --end) "
                     "or more --steps")
    else:
        stdout.print(f"suggested rate: {curve.suggestion:.2g} (the steepest fall of the "
                     "smoothed loss; check it on the picture)", soft_wrap=True)
        stdout.print(f"apply it:       {range_test.setting}")


@app.command(name="explain")
def explain_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `visionbench run`.")],
    model: Annotated[str, typer.Option("--model", help="Which model of the run.")],
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Image files to explain (repeatable); default: a few "
                     "correct and misclassified test images per class."),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option("--method", help="gradcam, integrated_gradients, smoothgrad, "
                     "guided_backprop, occlusion (repeatable; default: the config's)."),
    ] = None,
) -> None:
    """Explanation maps (heat map over the image) with their deletion faithfulness scores."""
    from visionbench.evaluate.explain import METHODS
    from visionbench.orchestrate.explain import explain_run

    for name in method or []:
        METHODS.get(name)
    out = explain_run(run_dir, model, images, method)
    stdout.print(f"explanations: {out}")


def _inspect_run(run_dir: Path, model: str | None, split: str, as_json: bool) -> None:
    """The label issues of a finished run, found, saved and printed."""
    from visionbench.orchestrate.label_issues import label_issues_of_run
    from visionbench.rundir import RunFolder

    issues = label_issues_of_run(run_dir, model, split)
    if as_json:
        sys.stdout.write(issues.model_dump_json(indent=2) + "\n")
        return
    stdout.print(f"label issues: {issues.found} of {issues.images_scored} images "
                 f"({issues.source} predictions of {issues.model}) have a label the model "
                 "disputes", soft_wrap=True)
    for pair in issues.pairs:
        stdout.print(f"  given {pair.given}, model says {pair.suggested}: {pair.count}",
                     soft_wrap=True)
    for row in issues.issues[:10]:
        stdout.print(f"  {row.id}: given {row.given} ({row.given_probability:.2f}), "
                     f"model says {row.suggested} ({row.suggested_probability:.2f})",
                     soft_wrap=True)
    stdout.print(f"all of them: {RunFolder(run_dir).file(type(issues))}; the report shows them",
                 soft_wrap=True)


def _print_inspection(inspection: Inspection, shift: ShiftDocument | None) -> None:
    """What `visionbench inspect` found, as tables and sentences."""
    from visionbench.data.describe import (
        describe_class_separation,
        describe_limit,
        describe_splits,
    )

    splits = list(inspection.splits)
    shape = "x".join(map(str, inspection.image_shape))
    table = Table(title=f"{inspection.source}  ({shape}, {inspection.channels} ch)")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for name in inspection.classes:
        table.add_row(name, *(str(inspection.splits[s][name]) for s in splits))
    table.add_row(Text("total", "bold"),
                  *(Text(str(inspection.totals[s]), "bold") for s in splits))
    stdout.print(table)
    for sentence in (describe_splits(inspection), describe_limit(inspection)):
        if sentence:
            stdout.print(sentence, highlight=False, soft_wrap=True)

    duplicates = inspection.duplicates
    dup = Table(title=f"duplicates (policy: {duplicates.policy if duplicates else 'none'})")
    for column in ("kind", "where", "pairs", "images", "label conflicts"):
        dup.add_column(column, justify="left" if column in ("kind", "where") else "right")
    examples = []
    for kind in ("exact", "near"):
        for place in ("within", "across"):
            for where, counts in (duplicates.at(kind, place) if duplicates else {}).items():
                dup.add_row(kind, where, *map(str, (counts.pairs, counts.images,
                                                    counts.label_conflicts)))
                if place == "across" and counts.examples:
                    examples.append(f"  {kind} {where}, e.g. {' = '.join(counts.examples[0])}")
    stdout.print(dup if dup.row_count else "duplicates: none found")
    for line in examples:
        stdout.print(line, highlight=False)

    for split, stats in inspection.image_stats.items():
        stdout.print(
            f"{split}: source sizes {stats.width.min}-{stats.width.max} px wide, "
            f"{stats.distinct_sizes} distinct; modes {stats.modes}; formats {stats.formats}"
        )
        for keyword, counts in stats.dicom.items():
            shown = ", ".join(f"{value}: {count}" for value, count in counts.items())
            stdout.print(f"  DICOM {keyword} (varies): {shown}", highlight=False,
                         soft_wrap=True)
    variance = inspection.variance
    if variance is not None:
        stdout.print(f"({'+'.join(variance.computed_on)}) "
                     f"{describe_class_separation(variance)}", highlight=False, soft_wrap=True)
    if inspection.failures:
        stdout.print(f"{len(inspection.failures)} file(s) skipped:", style="yellow")
        for name, why in list(inspection.failures.items())[:10]:
            stdout.print(printable(f"  {name}: {why}"), markup=False, highlight=False)
    if inspection.ignored_files and inspection.ignored_files.count:
        stdout.print(f"{inspection.ignored_files.count} non-image file(s) ignored")
    for warning in inspection.warnings:
        stdout.print(Text("warning: ", "yellow") + warning.message)
    _print_quality_and_shift(inspection.quality, shift)


def _print_quality_and_shift(quality: ImageQuality | None, shift: ShiftDocument | None
                             ) -> None:
    """The image-quality issues found, and each split's shift test against training."""
    from visionbench.evaluate.shift import verdict

    for issue in (quality.issues.values() if quality else []):
        if issue.images:
            where = ", ".join(f"{split} {sum(counts.values()):,}"
                              for split, counts in issue.counts.items())
            stdout.print(printable(f"image quality: {issue.meaning}: {issue.images:,} "
                                   f"({where})"), markup=False, highlight=False)
    for split, found in (shift.splits.items() if shift else []):
        stdout.print(f"shift: {verdict(found, f'the {split} images')}", markup=False,
                     highlight=False, soft_wrap=True)


def _error(message: str) -> None:
    stderr.print(Text("error: ", "red") + printable(message), highlight=False, soft_wrap=True)


def _usage(exc: TyperException) -> int:
    """Click's short usage error (the command's usage line, the problem, the closest
    command when one was misspelt) instead of a traceback; exit code 2."""
    message = str(exc)
    unknown = re.match(r"No such command '(.+)'", message)
    if unknown:
        commands = [c.name or c.callback.__name__ for c in app.registered_commands
                    if c.callback is not None]
        close = difflib.get_close_matches(unknown.group(1), commands, n=1)
        hint = f" Did you mean {close[0]!r}?" if close and "Did you mean" not in message else ""
        exc = type(exc)(f"{message.rstrip()}{hint} Commands: {', '.join(sorted(commands))}.",
                        getattr(exc, "ctx", None))
    show = getattr(exc, "show", None)
    if show is not None:
        show()
    else:
        _error(message)
    return int(getattr(exc, "exit_code", 2))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `visionbench` script; returns the exit code."""
    try:
        # Without standalone mode, click returns a `typer.Exit` code instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except UserError as exc:
        _error(str(exc))
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except InterruptedRunError as exc:
        _error(str(exc))
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        stderr.print("interrupted; finished results are kept, partial ones were discarded")
        return 130
    except TyperException as exc:
        return _usage(exc)
    except OSError as exc:
        # The machine refused (a read-only folder, a full disk, /proc, a file where a
        # folder should be): what was written before is intact, atomically.
        _error(describe_os_error(exc))
        return 2
    return code if isinstance(code, int) else 0


def describe_os_error(exc: OSError) -> str:
    """One line saying which file the system refused and why, and what to do.

    Example:
        >>> describe_os_error(OSError(20, "Not a directory", "/x/file/run"))
        'cannot write or read /x/file/run: Not a directory (a file stands where a folder is needed)'
    """
    where = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name)
    why = exc.strerror or str(exc)
    hints = {errno.EACCES: "a read-only folder? write elsewhere, e.g. --set output.dir=...",
             errno.EPERM: "a read-only folder? write elsewhere, e.g. --set output.dir=...",
             errno.EROFS: "a read-only filesystem: write elsewhere",
             errno.ENOSPC: "free space and run the command again",
             errno.ENOTDIR: "a file stands where a folder is needed",
             errno.ENAMETOOLONG: "shorten the file or folder name"}
    hint = hints.get(exc.errno or 0)
    return (f"cannot write or read {where or 'a file'}: {why}"
            + (f" ({hint})" if hint else ""))


def run() -> None:
    """Console-script wrapper: exit with `main()`'s code."""
    sys.exit(main())

