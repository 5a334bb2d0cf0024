"""``python cli.py bench``: training-step and sampling speed on this machine.

Figures are medians of several timed runs after a warm-up (min and max
shown as noise). Comparisons are **paired**: our call and a reference call
are timed in alternation (A B A B ..., at least 3 pairs) in one process,
and the figure is the median of the per-pair ratios, so a machine whose
speed drifts over minutes compares like with like. The references: the
same model built on ``keras.layers.LSTM`` (same sizes and losses, no
cuDNN), and the seed's design transcribed to eager TensorFlow
(:mod:`hg_keras.seed_design`); and GateLSTM's two paths for calls that need
no second derivative against each other (the fused ``BlockLSTM`` kernel and
the loop, :func:`hg_keras.layers.gate_lstm.first_order_only`).

FLOP counts are analytic, from the layer shapes (multiply-adds count 2;
element-wise gate math is ignored). Per sequence step, with latent Z,
hidden H, encoded width F and critic embedding width E:

* generator forward: ``2 directions * (2*Z*4H + 2*H*4H) + 2*(2H*H + H*H + H*F)``
* critic forward: ``2*(E*H + H*H) + 2 directions * (2*H*4H + 2*H*4H) + 2*2H``

A WGAN-GP step (batch B, length L) is counted as ``critic_steps`` critic
updates, each a generator forward (B), a critic forward and backward on real
and fake (3 x forward on 2B) and the gradient penalty (forward, input
gradient and its gradient: 9 x forward on B), plus a generator update
(3 x (generator + critic forward) on B). These multipliers are the usual
estimates (backward = 2 x forward); the count is an estimate, not a trace.
"""

import contextlib
import json
import logging
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from hg_keras.config import load_config
from hg_keras.data import CohortTransformer, load_cohort
from hg_keras.data.pipeline import correlation_target
from hg_keras.distribute import describe
from hg_keras.export import export_run
from hg_keras.files import atomic_write
from hg_keras.layers.gate_lstm import first_order_only, fused_kernel, loop_only
from hg_keras.models import Generator
from hg_keras.privacy import CriticDPSGD
from hg_keras.run_folder import RunFolder
from hg_keras.sampling import CHUNK_PATIENTS
from hg_keras.seed_design import SeedDesignStep
from hg_keras.training import build_wgan

log = logging.getLogger(__name__)


def _timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def paired(ours, reference, pairs=3):
    """Times `ours` and `reference` in alternation after one warm-up call each.

    Returns:
        dict ``ours`` and ``reference`` (median seconds), ``ratios`` (reference
        time / our time, one per pair, in order) and ``ratio`` (their median:
        how many times faster ours is).
    """
    ours()
    reference()
    times = {"ours": [], "reference": []}
    ratios = []
    for _ in range(pairs):
        for name, function in (("ours", ours), ("reference", reference)):
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
        ratios.append(times["reference"][-1] / times["ours"][-1])
    return {
        "ours": statistics.median(times["ours"]),
        "reference": statistics.median(times["reference"]),
        "ratios": ratios,
        "ratio": statistics.median(ratios),
    }


def matmul_peak(size=2048, repeats=5):
    """Measured fp32 GFLOP/s of a square matmul (the machine's practical peak)."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    run = tf.function(lambda: tf.matmul(a, b))
    run().numpy()
    stats = _timed(lambda: run().numpy(), repeats)
    return 2 * size**3 / stats["median"] / 1e9


def step_flops(config, layout, batch, steps):
    """Analytic FLOPs of one WGAN-GP step (see the module docstring)."""
    z, h = config.model.latent_dim, config.model.hidden_units
    f, e = (
        layout.width,
        layout.numeric_width + sum(b.embedding_size for b in layout.discrete_blocks),
    )
    generator = 2 * (2 * z * 4 * h + 2 * h * 4 * h) + 2 * (2 * h * h + h * h + h * f)
    critic = 2 * (e * h + h * h) + 2 * (2 * h * 4 * h + 2 * h * 4 * h) + 2 * 2 * h
    per_critic_update = generator * batch + 3 * critic * 2 * batch + 9 * critic * batch
    per_generator_update = 3 * (generator + critic) * batch
    return steps * (config.training.critic_steps * per_critic_update + per_generator_update)


def sampler_flops(config, layout, patients, steps):
    """Analytic FLOPs of generating `patients` sequences of `steps` months."""
    z, h, f = config.model.latent_dim, config.model.hidden_units, layout.width
    generator = 2 * (2 * z * 4 * h + 2 * h * 4 * h) + 2 * (2 * h * h + h * h + h * f)
    return generator * patients * steps


KERNELS = {None: contextlib.nullcontext, "fused": fused_kernel, "loop": loop_only}


# Patients of the private step's paired timing.
PRIVATE_BATCH = 32


def _step_function(config, transformer, encoded, recurrent="gate", kernel=None, privacy=None):
    """A traced ``WGANGP.train_step`` (any length) with fresh weights from seed 0.

    Args:
        kernel: None (the device's default), ``fused`` or ``loop``: GateLSTM's
            path for the calls that need no second derivative.
        privacy: :class:`hg_keras.privacy.CriticDPSGD`: DP-SGD critic updates.
    """
    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, encoded, recurrent=recurrent, privacy=privacy)
    spec = tf.TensorSpec((encoded.shape[0], None, encoded.shape[2]), tf.float32)
    step = tf.function(wgan.train_step, input_signature=[spec])
    with KERNELS[kernel]():
        step.get_concrete_function()  # traced now, with that kernel
    return lambda batch: float(step(batch)["critic_loss"])


def _train_steps(step, encoded, lengths, repeats):
    results = {}
    start = time.perf_counter()
    for length in lengths:
        batch = tf.constant(encoded[:, :length])
        step(batch)  # the first call traces (once, any length)
        if "trace_s" not in results:
            results["trace_s"] = time.perf_counter() - start
        results[length] = _timed(lambda b=batch: step(b), repeats)
        log.info("train step at length %d: %.3f s", length, results[length]["median"])
    return results


def _generator_forward(config, transformer, recurrent="gate", kernel=None):
    """A traced forward pass of a freshly initialised generator: noise -> encoded,
    as sampling runs it (see :func:`_step_function` for `kernel`)."""
    keras.utils.set_random_seed(0)
    generator = Generator(
        transformer.layout.spec(),
        latent_dim=config.model.latent_dim,
        hidden_units=config.model.hidden_units,
        recurrent=recurrent,
    )

    @tf.function
    def forward(noise):
        with first_order_only():
            return generator(noise, training=False)

    with KERNELS[kernel]():
        forward.get_concrete_function(tf.TensorSpec((None, None, config.model.latent_dim)))
    return lambda noise: forward(noise).numpy()


def _distributed_steps(strategy, config, transformer, encoded, length, repeats):
    """Times a train step replicated by `strategy` over its global batch (`encoded`)."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        wgan = build_wgan(config, transformer, encoded)
    dataset = tf.data.Dataset.from_tensors(encoded[:, :length].astype("float32")).repeat()
    batches = iter(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def step():
        return strategy.run(wgan.train_step, args=(next(batches),))

    def call():
        float(strategy.experimental_local_results(step()["critic_loss"])[0])

    call()
    return _timed(call, repeats)


def _sampling(run_dir, sizes, repeats, chunks):
    """``serving_default`` timings: at each size (default chunk), and at the
    largest size for each chunk size (keyed ``("chunk", size)``)."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for chunk in dict.fromkeys((CHUNK_PATIENTS, *chunks)):
            path = export_run(run_dir, out=Path(folder) / f"m{chunk}", chunk_patients=chunk)
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]

            def call(n, serve=serve):
                outputs = serve(n=tf.constant(n), seq_len=tf.constant(60), seed=tf.constant(1))
                return outputs["VL"].numpy()

            call(sizes[0])  # warm-up
            for n in sizes if chunk == CHUNK_PATIENTS else sizes[-1:]:
                stats = _timed(lambda n=n: call(n), repeats)
                log.info("sampling %d patients (chunk %d): %.2f s", n, chunk, stats["median"])
                if chunk == CHUNK_PATIENTS:
                    results[n] = stats
            results[("chunk", chunk)] = stats  # the largest size
    return results


def device_info():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU: {details.get('device_name', gpus[0].name)} x{len(gpus)}"
    else:
        model = platform.processor() or "unknown CPU"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        device = f"CPU: {model}, {os.cpu_count()} cores"
    return {
        "device": device,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "xla": False,
        "mixed_precision": keras.mixed_precision.dtype_policy().name != "float32",
    }


def run_benchmark(
    out=None,
    quick=False,
    run_dir=None,
    config=None,
    batch=256,
    sizes=None,
    strategy=None,
    lengths=None,
    pairs=3,
    chunks=None,
):
    """Runs the benchmark, prints a table and writes JSON to `out`.

    Args:
        out: path of the JSON file (written atomically), or None.
        quick: bool, fewer lengths, repeats and patients (a few minutes on 2 cores).
        run_dir: a trained run whose SavedModel is timed for sampling; a
            freshly initialised generator of the same shape is used when None.
        config: :class:`Config` (default: the paper's ``art4hiv``); tests pass tiny ones.
        batch: int, training batch size (v1: 256).
        sizes: tuple of sampling sizes (default 500 and 100,000; 500 and 10,000 quick).
        strategy: a ``tf.distribute`` strategy to also time the step
            replicated over (`batch` patients per replica), for throughput per
            replica and scaling against one device.
        lengths: sequence lengths of the step timings (default 10, 30, 60;
            10, 60 quick); the paired comparisons use the longest.
        pairs: int >= 3, alternations of each paired comparison.
        chunks: ``serving_default`` chunk sizes to time at the largest of
            `sizes` (default 500, 2,000, 8,000).

    Returns:
        dict of figures.
    """
    config = config or load_config("art4hiv")
    replicas = strategy.num_replicas_in_sync if strategy else 1
    frame = load_cohort(patients=batch * replicas)
    transformer = CohortTransformer(config.schema).fit(frame)
    encoded = transformer.encode(frame)
    replicated = encoded
    encoded = encoded[:batch]
    lengths = tuple(lengths or ((10, 60) if quick else (10, 30, 60)))
    longest = max(lengths)
    repeats = 2 if quick else 3
    peak = matmul_peak(repeats=3 if quick else 5)
    figures = {**device_info(), "matmul_peak_gflops": peak, "batch": batch, "pairs": pairs}

    step = _step_function(config, transformer, encoded)
    _train_figures(figures, step, config, transformer, encoded, lengths, repeats)
    real = tf.constant(encoded[:, :longest])
    seed_design = SeedDesignStep(
        transformer.layout,
        config.model.latent_dim,
        config.model.hidden_units,
        config.training.critic_steps,
        correlation_target(encoded),
    )
    _paired_step_figures(figures, step, seed_design, config, transformer, encoded, real)
    if strategy is not None:
        stats = _distributed_steps(strategy, config, transformer, replicated, longest, repeats)
        _distributed_figures(figures, strategy, stats, longest)

    sizes = sizes or ((500, 10_000) if quick else (500, 100_000))
    _generator_pairs(figures, config, transformer, seed_design, min(sizes[-1], 2_000), pairs)
    chunks = chunks or (500, 2_000, 8_000)
    with tempfile.TemporaryDirectory() as folder:
        if run_dir is None:
            run_dir = _untrained_run(config, transformer, Path(folder))
        sampling = _sampling(run_dir, sizes, repeats, chunks)
    _sampling_figures(figures, sampling, config, transformer, sizes, chunks)
    figures["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _print(figures)
    if out:
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(figures, indent=2)))
    return figures


def _train_figures(figures, step, config, transformer, encoded, lengths, repeats):
    """The training step's time, throughput and FLOP rate at each length."""
    batch = len(encoded)
    ours = _train_steps(step, encoded, lengths, repeats)
    for length in lengths:
        stats = ours[length]
        figures[f"train_step_ms_b{batch}_l{length}"] = 1000 * stats["median"]
        figures[f"train_step_ms_b{batch}_l{length}_min"] = 1000 * stats["min"]
        figures[f"train_step_ms_b{batch}_l{length}_max"] = 1000 * stats["max"]
        figures[f"train_sequences_per_s_l{length}"] = batch / stats["median"]
        figures[f"train_gflops_l{length}"] = (
            step_flops(config, transformer.layout, batch, length) / stats["median"] / 1e9
        )
    figures["train_trace_s"] = ours["trace_s"]
    longest = max(lengths)
    figures[f"train_fraction_of_matmul_peak_l{longest}"] = (
        figures[f"train_gflops_l{longest}"] / figures["matmul_peak_gflops"]
    )


def _paired_step_figures(figures, step, seed_design, config, transformer, encoded, real):
    """Our step against Keras's LSTM and the seed's design, and the kernel choice, in
    alternation at the longest length."""
    pairs, longest = figures["pairs"], real.shape[1]
    references = {
        "keras_lstm": _step_function(config, transformer, encoded, recurrent="keras"),
        "seed_design": lambda batch: float(seed_design(batch)),
    }
    for name, reference in references.items():
        _record(
            figures,
            f"train_{name}_l{longest}",
            paired(lambda: step(real), lambda r=reference: r(real), pairs),
        )
    # The kernel choice itself: the fused kernel forced, against the loop forced.
    fused = _step_function(config, transformer, encoded, kernel="fused")
    # Without a GPU the default step is the loop: no second trace of it.
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    loop = _step_function(config, transformer, encoded, kernel="loop") if on_gpu else step
    result = paired(lambda: fused(real), lambda: loop(real), pairs)
    _record(figures, f"train_loop_vs_fused_kernel_l{longest}", result)
    # What differential privacy costs: the step with DP-SGD critic updates
    # (per-patient gradients, clipping, noise) against the plain step, on
    # PRIVATE_BATCH patients: its per-patient loop grows linearly with the batch.
    few = real[:PRIVATE_BATCH]
    dpsgd = CriticDPSGD(clip_norm=1.0, noise_multiplier=1.0, expected_batch=len(few), key=0)
    private = _step_function(config, transformer, encoded[: len(few)], privacy=dpsgd)
    if len(few) == len(real):
        plain = step
    else:
        plain = _step_function(config, transformer, encoded[: len(few)])
    result = paired(lambda: private(few), lambda: plain(few), pairs)
    _record(figures, f"train_private_vs_plain_b{len(few)}_l{longest}", result)


def _distributed_figures(figures, strategy, stats, longest):
    """The replicated step's throughput, per replica and against one device."""
    batch, replicas = figures["batch"], strategy.num_replicas_in_sync
    per_second = batch * replicas / stats["median"]
    figures["strategy"] = describe(strategy)
    figures[f"distributed_step_ms_b{batch}x{replicas}_l{longest}"] = 1000 * stats["median"]
    figures[f"distributed_sequences_per_s_l{longest}"] = per_second
    figures[f"distributed_sequences_per_s_per_replica_l{longest}"] = per_second / replicas
    figures[f"distributed_scaling_vs_one_device_l{longest}"] = (
        per_second / figures[f"train_sequences_per_s_l{longest}"]
    )


def _sampling_figures(figures, sampling, config, transformer, sizes, chunks):
    """Patients per second by size and by chunk, and the sampler's FLOP rate."""
    for n in sizes:
        figures[f"sample_patients_per_s_n{n}"] = n / sampling[n]["median"]
    largest = sizes[-1]
    for chunk in chunks:
        figures[f"sample_patients_per_s_n{largest}_chunk{chunk}"] = (
            largest / sampling[("chunk", chunk)]["median"]
        )
    figures["sample_gflops"] = (
        sampler_flops(config, transformer.layout, largest, 60) / sampling[largest]["median"] / 1e9
    )
    figures["sample_fraction_of_matmul_peak"] = (
        figures["sample_gflops"] / figures["matmul_peak_gflops"]
    )


def _record(figures, key, result):
    """A paired comparison's figures: its ratio, each pair's ratio, both median times."""
    log.info(
        "%s: ours %.3f s, reference %.3f s, pair ratios %s",
        key,
        result["ours"],
        result["reference"],
        ", ".join(f"{r:.2f}" for r in result["ratios"]),
    )
    figures[f"paired_{key}_ratio"] = result["ratio"]
    figures[f"paired_{key}_ratios"] = [round(r, 3) for r in result["ratios"]]
    figures[f"paired_{key}_ours_ms"] = 1000 * result["ours"]
    figures[f"paired_{key}_reference_ms"] = 1000 * result["reference"]


def _generator_pairs(figures, config, transformer, seed_design, patients, pairs):
    """Forward-only generation of `patients` x 60 months, ours against each reference."""
    noise = tf.random.stateless_uniform((patients, 60, config.model.latent_dim), seed=(0, 0))
    ours = _generator_forward(config, transformer)
    references = {
        "keras_lstm": _generator_forward(config, transformer, recurrent="keras"),
        "seed_design": lambda z: seed_design.generate(z).numpy(),
    }
    for name, reference in references.items():
        result = paired(lambda: ours(noise), lambda r=reference: r(noise), pairs)
        _record(figures, f"generate_{name}_n{patients}", result)
    figures[f"generate_patients_per_s_n{patients}"] = patients / result["ours"]
    fused = _generator_forward(config, transformer, kernel="fused")
    loop = _generator_forward(config, transformer, kernel="loop")
    result = paired(lambda: fused(noise), lambda: loop(noise), pairs)
    _record(figures, f"generate_loop_vs_fused_kernel_n{patients}", result)


def _untrained_run(config, transformer, folder):
    """A run folder with an initialised generator: sampling cost does not depend on training."""
    keras.utils.set_random_seed(0)
    run = RunFolder(folder / "run")
    generator = Generator(
        transformer.layout.spec(),
        latent_dim=config.model.latent_dim,
        hidden_units=config.model.hidden_units,
        name="generator",
    )
    run.write_setup(config, transformer, holdout_ids=[])
    run.write_generator(generator)
    return run.path


def _print(figures):
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        if isinstance(value, float):
            shown = f"{value:,.2f}"
        elif isinstance(value, list):
            shown = ", ".join(f"{v:,.2f}" for v in value)
        else:
            shown = str(value)
        print(f"{key:<{width}}  {shown}")
