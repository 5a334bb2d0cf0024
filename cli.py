"""hg-keras command line: train, sample and export synthetic patient cohorts.

python cli.py train                 # quick config on the embedded cohort
python cli.py sample --n 500        # from saved_models/latest
"""

import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402


def _import_tensorflow_quietly():
    """Imports TensorFlow with stderr muted: TF 2.21 prints absl start-up lines
    that TF_CPP_MIN_LOG_LEVEL no longer silences."""
    if "--debug" in sys.argv:
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow

                # Device discovery prints a cuInit error on machines without a GPU.
                tensorflow.config.list_physical_devices()
            except ImportError:
                pass  # Raised again, with its message, where it is first needed.
    finally:
        os.dup2(saved, 2)
        os.close(saved)


DEFAULT_CONFIG = "quick"
LATEST = os.path.join("saved_models", "latest")


class _EchoHandler(logging.Handler):
    """The library's log lines on stderr, as the CLI's own messages are."""

    def emit(self, record):
        prefix = "note: " if record.levelno >= logging.WARNING else ""
        click.echo(prefix + record.getMessage(), err=True)


def _show_library_log():
    logger = logging.getLogger("hg_keras")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
    logger.setLevel(logging.INFO)


class Commands(click.Group):
    """Prints user errors as one line (no traceback) unless --debug is given."""

    def invoke(self, ctx):
        _import_tensorflow_quietly()  # before hg_keras, whose import loads TensorFlow
        _show_library_log()
        from hg_keras.errors import InputError, TrainingError, TrainingInterrupted

        try:
            return super().invoke(ctx)
        except (InputError, TrainingError, OSError) as error:
            if ctx.params.get("debug"):
                raise
            if isinstance(error, OSError):
                where = f"{error.filename}: " if error.filename else ""
                message = f"{where}{error.strerror or error}"
            else:
                message = str(error)
            click.echo(f"error: {message}", err=True)
            ctx.exit(130 if isinstance(error, TrainingInterrupted) else 2)


@click.group(cls=Commands)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def cli(debug):
    """Health Gym v1 in Keras 3: synthetic longitudinal patient cohorts."""


@cli.command()
@click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Config YAML, or the name of a shipped one (quick, art4hiv, sepsis, hypotension).",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    help="Cohort CSV/Parquet matching the config's schema [default: embedded cohort].",
)
@click.option("--patients", type=click.IntRange(min=1), help="Train on the first N patients.")
@click.option(
    "--updates",
    type=click.IntRange(min=1),
    help="Generator updates to train for [default: the config's training.updates].",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Train for this many minutes (to the next epoch end); with --updates or --epochs, "
    "whichever comes first.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (each walks the curriculum).")
@click.option("--seed", type=int, help="Seed for weights, data order and noise.")
@click.option(
    "--epsilon",
    type=click.FloatRange(min=0, min_open=True),
    help="Train with differential privacy: the (epsilon, delta) target of the run "
    "(the schema needs bounds on its numerics; README, Privacy).",
)
@click.option(
    "--holdout",
    type=click.FloatRange(min=0),
    help="Patients kept out of training for the evaluation: a fraction (0.2) or a count "
    "(100); 0 trains on all [default: the config's training.holdout].",
)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run folder [default: saved_models/run-<time>]."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out (default: latest).")
@click.option(
    "--evaluation/--no-evaluation",
    default=True,
    show_default=True,
    help="Evaluate a synthetic cohort against the held-out patients at the end.",
)
@click.option(
    "--export/--no-export",
    "export_serving",
    default=True,
    show_default=True,
    help="Write the TF Serving SavedModel at the end (later: python cli.py export).",
)
@click.option(
    "--eval-repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Classifier seeds the end-of-training evaluation averages its discriminative "
    "score and TSTR ratio over (1 is about 3x faster, without a spread).",
)
@click.option(
    "--eval-max-epochs",
    type=click.IntRange(min=1),
    help="The most epochs each post-hoc network of that evaluation trains for; each stops "
    "earlier once its validation loss stops improving [default: 200].",
)
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored", "multiworker"]),
    default="default",
    show_default=True,
    help="tf.distribute strategy: one device, all local GPUs, or the machines in TF_CONFIG.",
)
@click.option(
    "--cpu-replicas",
    type=click.IntRange(min=1),
    help="With --strategy mirrored: replicate over N logical CPU devices (no GPU needed).",
)
def train(
    config_path,
    data,
    patients,
    updates,
    minutes,
    epochs,
    seed,
    epsilon,
    holdout,
    out,
    resume,
    evaluation,
    export_serving,
    eval_repeats,
    eval_max_epochs,
    strategy,
    cpu_replicas,
):
    """Train the WGAN-GP and save the run (config, transforms, checkpoints, generator)."""
    from hg_keras.distribute import is_chief, make_strategy

    # Before any TensorFlow operation: devices and the cluster are fixed then.
    strategy = make_strategy(strategy, cpu_replicas)
    from hg_keras import Synthesizer
    from hg_keras.evaluation.evaluate import headline
    from hg_keras.run_folder import RunFolder

    if resume:
        if patients or seed is not None or holdout is not None or epsilon:
            raise click.UsageError(
                "--resume continues a run as configured; only --updates, --minutes, --epochs "
                "and --data may be given"
            )
        out = out or LATEST
    # A resumed run trains with its own config; --config is not read then.
    config = "quick" if resume else config_path
    privacy = {"epsilon": epsilon} if epsilon else None
    synth = Synthesizer(config, patients=patients, seed=seed, holdout=holdout, privacy=privacy)
    out = out or RunFolder.new().path
    synth.fit(
        data,
        out=out,
        epochs=epochs,
        updates=updates,
        minutes=minutes,
        resume=resume,
        strategy=strategy,
    )
    if not is_chief(strategy):
        click.echo(f"worker done; the chief writes the run to {synth.worker_run_dir}")
        return
    served = synth.export() if export_serving else None
    guarantee = synth.folder.read_info().get("privacy")
    if guarantee:
        click.echo(
            f"privacy:           ({guarantee['epsilon']:.3g}, {guarantee['delta']:.3g})-"
            f"differentially private per patient after "
            + ("the marginals' release and " if guarantee.get("released") else "")
            + f"{guarantee['updates']} updates"
            + (" (budget spent)" if guarantee["budget_spent"] else "")
        )
    click.echo(f"trained generator: {synth.folder.generator_path}")
    if served:
        click.echo(f"TF Serving model:  {served}")
    else:
        click.echo(f"TF Serving model:  not written; python cli.py export --model {synth.run_dir}")
    if evaluation:
        click.echo("evaluating a synthetic cohort of the training cohort's size...", err=True)
        metrics = synth.evaluate(repeats=eval_repeats, max_epochs=eval_max_epochs)
        for area, verdict in metrics["verdicts"].items():
            click.echo(f"{area:>9}: {verdict}")
        click.echo(f"   scores: {headline(metrics)}")
        copies = metrics["privacy"]["exact_copies"]
        click.echo(f"exact copies of training patients in the evaluation sample: {copies}")
        click.echo(f"report:            {synth.folder.evaluation_dir / 'report.html'}")
    click.echo(f"sample from it:    python cli.py sample --model {synth.run_dir} --n 500")


@cli.command()
@click.option("--n", "patients", type=int, required=True, help="Number of synthetic patients.")
@click.option(
    "--model", "model_dir", default=LATEST, show_default=True, help="A run folder written by train."
)
@click.option(
    "--months",
    type=int,
    help="Time steps per patient [default: as trained; variable-length runs draw each "
    "patient's length from the training lengths].",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option(
    "--out", default="synthetic.csv", show_default=True, help="Output file, .csv or .parquet."
)
@click.option(
    "--max-copies",
    type=int,
    help="Refuse to write when more synthetic patients exactly copy a training patient.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=2_000,
    show_default=True,
    help="Patients generated at a time (memory against speed; see BENCHMARKS.md). The "
    "chunking is part of what a seed means: the SavedModel's serving_default uses 2,000.",
)
@click.option(
    "--where",
    multiple=True,
    help="Only patients with this static attribute, e.g. Gender=Female (label or code); "
    "repeat or comma-separate for several. Needs a conditional model.",
)
def sample(patients, model_dir, months, seed, out, max_copies, chunk, where):
    """Write N synthetic patients in the training data's long format."""
    from hg_keras import Synthesizer
    from hg_keras.conditions import parse_where

    synth = Synthesizer.load(model_dir)
    conditions = parse_where(where, synth.schema)
    path, copies = synth.sample_to_file(
        patients,
        out,
        months=months,
        seed=seed,
        max_copies=max_copies,
        where=conditions,
        chunk_patients=chunk,
    )
    if months is None and synth.schema.variable_length:
        steps = f"1 to {synth.months} steps (as in training)"
    else:
        steps = f"{synth.months if months is None else months} steps"
    only = f" with {', '.join(where)}" if conditions else ""
    click.echo(f"wrote {patients} synthetic patients{only} x {steps} to {path}")
    if copies is None:
        click.echo("exact copies of training patients: not checked (training cohort not found)")
    else:
        click.echo(f"exact copies of training patients: {copies}")


@cli.command()
@click.option(
    "--real",
    "real_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Real (training) cohort, CSV or Parquet.",
)
@click.option(
    "--synthetic",
    "synthetic_paths",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Synthetic cohort with the schema's columns; repeat to compare several generators.",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    help="A name per --synthetic, in order, for the comparison [default: file names].",
)
@click.option(
    "--holdout",
    "holdout_path",
    type=click.Path(dir_okay=False),
    help="Real patients NOT used in training [default: half of --real].",
)
@click.option(
    "--config", "config_path", help="Config holding the schema [default: --model's, else art4hiv]."
)
@click.option("--model", "model_dir", help="The run that made --synthetic (schema, curves).")
@click.option("--out", default="evaluation", show_default=True, help="Output folder.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for the split and the post-hoc classifiers.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Classifier seeds (seed, seed+1, ...) the discriminative score and TSTR ratio "
    "are averaged over, reported with their spread.",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    help="The most epochs each post-hoc network trains for; each stops earlier once its "
    "validation loss stops improving [default: 200].",
)
def evaluate(
    real_path,
    synthetic_paths,
    names,
    holdout_path,
    config_path,
    model_dir,
    out,
    seed,
    repeats,
    max_epochs,
):
    """Fidelity, utility and privacy metrics and an HTML report.

    With several --synthetic files, each is scored against the same real and
    holdout patients with the same classifier seeds, into <out>/<name>/, and
    <out>/comparison.html puts them side by side with the best of each row marked.
    """
    from pathlib import Path

    from hg_keras.config import load_config
    from hg_keras.data import load_cohort, load_synthetic
    from hg_keras.evaluation import evaluate as run_evaluation
    from hg_keras.evaluation import write_comparison, write_report
    from hg_keras.evaluation.evaluate import headline
    from hg_keras.run_folder import RunFolder

    if names and len(names) != len(synthetic_paths):
        raise click.UsageError(
            f"got {len(names)} --name for {len(synthetic_paths)} --synthetic; give one per file"
        )
    names = list(names) or _file_names(synthetic_paths)
    if len(set(names)) != len(names):
        raise click.UsageError(f"--name values must differ, got {', '.join(names)}")
    if config_path:
        schema = load_config(config_path).schema
    elif model_dir:
        schema = RunFolder(model_dir).read_config().schema
    else:
        schema = load_config("art4hiv").schema
    real = load_cohort(real_path, schema)
    holdout = load_cohort(holdout_path, schema) if holdout_path else None
    # Every file is read before anything is written, so a bad one costs nothing.
    synthetic = [load_synthetic(path, schema) for path in synthetic_paths]
    history = RunFolder(model_dir).history_csv if model_dir else None
    several = len(synthetic) > 1
    results = {}
    floor = None  # the real patients' scores: the same for every file
    for name, (frame, defects) in zip(names, synthetic):
        metrics, details = run_evaluation(
            real,
            frame,
            schema,
            holdout=holdout,
            seed=seed,
            defects=defects,
            repeats=repeats,
            floor=floor,
            **({"max_epochs": max_epochs} if max_epochs else {}),
        )
        floor = metrics["floor"]
        folder = Path(out) / name if several else Path(out)
        report = write_report(metrics, details, folder, history_csv=history)
        results[name] = metrics
        prefix = f"{name}: " if several else ""
        for area, verdict in metrics["verdicts"].items():
            click.echo(f"{prefix}{area:>9}: {verdict}")
        click.echo(f"{prefix}   scores: {headline(metrics)}")
        click.echo(f"{prefix}metrics: {folder / 'metrics.json'}")
        click.echo(f"{prefix}report:  {report}")
    if several:
        click.echo(f"comparison: {write_comparison(results, out)}")


def _file_names(paths):
    """Names for the comparison columns: file stems, made unique with their folders."""
    from pathlib import Path

    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(Path(p).with_suffix("")).replace("/", "_") for p in paths]


@cli.command()
@click.option(
    "--model", "model_dir", default=LATEST, show_default=True, help="A run folder written by train."
)
@click.option("--out", help="Model base folder for TF Serving [default: <model>/serving/hg_keras].")
@click.option("--version", type=click.IntRange(min=1), help="Version folder [default: next].")
def export(model_dir, out, version):
    """Export the generator as a SavedModel for TF Serving (decodes in-graph)."""
    from hg_keras import Synthesizer

    path = Synthesizer.load(model_dir).export(out=out, version=version)
    click.echo(f"SavedModel: {path}")
    click.echo(f"inspect:    saved_model_cli show --dir {path} --all")


@cli.command()
@click.option("--out", default="bench.json", show_default=True, help="JSON file for the figures.")
@click.option(
    "--quick", is_flag=True, help="Fewer lengths, repeats and patients (minutes on 2 cores)."
)
@click.option(
    "--pairs",
    type=click.IntRange(min=3),
    default=3,
    show_default=True,
    help="Alternations (ours, reference, ours, ...) of each paired comparison.",
)
@click.option(
    "--model",
    "model_dir",
    help="Time this run's SavedModel [default: an untrained generator of the same shape].",
)
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored"]),
    default="default",
    show_default=True,
    help="Also time the step replicated by this strategy (256 patients per replica).",
)
@click.option(
    "--cpu-replicas",
    type=click.IntRange(min=1),
    help="With --strategy mirrored: replicate over N logical CPU devices.",
)
def bench(out, quick, pairs, model_dir, strategy, cpu_replicas):
    """Time the WGAN-GP step and the sampler, paired against references.

    The references (timed in alternation with ours, median of the pair
    ratios): keras.layers.LSTM, our model without its fused forward kernel,
    the seed's design transcribed to eager TensorFlow, and (for what
    differential privacy costs) the step with DP-SGD critic updates.
    """
    from hg_keras.distribute import make_strategy

    strategy = make_strategy(strategy, cpu_replicas) if strategy != "default" else None
    from hg_keras.bench import run_benchmark

    run_benchmark(out=out, quick=quick, run_dir=model_dir, strategy=strategy, pairs=pairs)
    click.echo(f"figures: {out}")


if __name__ == "__main__":
    sys.exit(cli())
