"""``python cli.py bench``: training-step and sampling speed on this machine.

Figures are medians of several timed runs after a warm-up (min and max
shown as noise), measured side by side in one process: our model, a
reference built on ``keras.layers.LSTM`` (same sizes, same losses, no
cuDNN), and the machine's fp32 matmul peak.

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

import json
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
from hg_keras.files import atomic_write


def _timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


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


def _train_steps(config, transformer, encoded, lengths, repeats, recurrent):
    from hg_keras.training import build_wgan

    keras.utils.set_random_seed(0)
    wgan = build_wgan(config, transformer, correlation_target(encoded), recurrent=recurrent)
    spec = tf.TensorSpec((encoded.shape[0], None, encoded.shape[2]), tf.float32)
    step = tf.function(wgan.train_step, input_signature=[spec])
    results = {}
    start = time.perf_counter()
    for length in lengths:
        batch = tf.constant(encoded[:, :length])
        float(step(batch)["critic_loss"])  # the first call traces (once, any length)
        if "trace_s" not in results:
            results["trace_s"] = time.perf_counter() - start
        results[length] = _timed(lambda b=batch: float(step(b)["critic_loss"]), repeats)
    return results


def _distributed_steps(strategy, config, transformer, encoded, length, repeats):
    """Times a train step replicated by `strategy` over its global batch (`encoded`)."""
    from hg_keras.training import build_wgan

    keras.utils.set_random_seed(0)
    with strategy.scope():
        wgan = build_wgan(config, transformer, correlation_target(encoded))
    dataset = tf.data.Dataset.from_tensors(encoded[:, :length].astype("float32")).repeat()
    batches = iter(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def step():
        return strategy.run(wgan.train_step, args=(next(batches),))

    def call():
        float(strategy.experimental_local_results(step()["critic_loss"])[0])

    call()
    return _timed(call, repeats)


def _sampling(run_dir, sizes, repeats):
    from hg_keras.export import export_run

    with tempfile.TemporaryDirectory() as folder:
        path = export_run(run_dir, out=Path(folder) / "m")
        model = tf.saved_model.load(str(path))
        serve = model.signatures["serving_default"]
        results = {}
        for n in sizes:

            def call(n=n):
                outputs = serve(n=tf.constant(n), seq_len=tf.constant(60), seed=tf.constant(1))
                return outputs["VL"].numpy()

            call()
            results[n] = _timed(call, repeats)
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
    out=None, quick=False, run_dir=None, config=None, batch=256, sizes=None, strategy=None
):
    """Runs the benchmark, prints a table and writes JSON to `out`.

    Args:
        out: path of the JSON file (written atomically), or None.
        quick: bool, fewer lengths, repeats and patients (under 2 minutes on 2 cores).
        run_dir: a trained run whose SavedModel is timed for sampling; a
            freshly initialised generator of the same shape is used when None.
        config: :class:`Config` (default: the paper's ``art4hiv``); tests pass tiny ones.
        batch: int, training batch size (v1: 256).
        sizes: tuple of sampling sizes (default 500 and 100,000; 500 and 10,000 quick).
        strategy: a ``tf.distribute`` strategy to also time the L=60 step
            replicated over (`batch` patients per replica), for throughput per
            replica and scaling against one device.

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
    lengths = (10, 60) if quick else (10, 30, 60)
    repeats = 2 if quick else 3
    peak = matmul_peak(repeats=3 if quick else 5)

    ours = _train_steps(config, transformer, encoded, lengths, repeats, "gate")
    reference = _train_steps(config, transformer, encoded, (60,), repeats, "keras")
    figures = {**device_info(), "matmul_peak_gflops": peak, "batch": batch}
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
    figures[f"reference_keras_lstm_step_ms_b{batch}_l60"] = 1000 * reference[60]["median"]
    figures["speedup_vs_keras_lstm_l60"] = reference[60]["median"] / ours[60]["median"]
    figures["train_fraction_of_matmul_peak_l60"] = figures["train_gflops_l60"] / peak
    if strategy is not None:
        from hg_keras.distribute import describe

        stats = _distributed_steps(strategy, config, transformer, replicated, 60, repeats)
        per_second = batch * replicas / stats["median"]
        figures["strategy"] = describe(strategy)
        figures[f"distributed_step_ms_b{batch}x{replicas}_l60"] = 1000 * stats["median"]
        figures["distributed_sequences_per_s_l60"] = per_second
        figures["distributed_sequences_per_s_per_replica_l60"] = per_second / replicas
        figures["distributed_scaling_vs_one_device_l60"] = (
            per_second / figures["train_sequences_per_s_l60"]
        )

    sizes = sizes or ((500, 10_000) if quick else (500, 100_000))
    with tempfile.TemporaryDirectory() as folder:
        if run_dir is None:
            run_dir = _untrained_run(config, transformer, Path(folder))
        sampling = _sampling(run_dir, sizes, repeats)
    for n in sizes:
        figures[f"sample_patients_per_s_n{n}"] = n / sampling[n]["median"]
    largest = sizes[-1]
    figures["sample_gflops"] = (
        sampler_flops(config, transformer.layout, largest, 60) / sampling[largest]["median"] / 1e9
    )
    figures["sample_fraction_of_matmul_peak"] = figures["sample_gflops"] / peak
    figures["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _print(figures)
    if out:
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(figures, indent=2)))
    return figures


def _untrained_run(config, transformer, folder):
    """A run folder with an initialised generator: sampling cost does not depend on training."""
    from hg_keras.config import save_config
    from hg_keras.models import Generator

    keras.utils.set_random_seed(0)
    run = folder / "run"
    run.mkdir()
    generator = Generator(
        transformer.layout.spec(),
        latent_dim=config.model.latent_dim,
        hidden_units=config.model.hidden_units,
        name="generator",
    )
    generator.save(run / "generator.keras")
    transformer.save(run / "transforms.json")
    save_config(config, run / "config.yaml")
    return run


def _print(figures):
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
