import json

from hg_keras.bench import run_benchmark, sampler_flops, step_flops
from hg_keras.config import load_config
from hg_keras.data import FeatureLayout


def test_flop_counts_from_layer_shapes(art_config):
    layout = FeatureLayout(art_config.schema)
    z = h = 128
    generator = 2 * (2 * z * 4 * h + 2 * h * 4 * h) + 2 * (2 * h * h + h * h + h * 37)
    critic = 2 * (33 * h + h * h) + 2 * (2 * h * 4 * h + 2 * h * 4 * h) + 2 * 2 * h
    expected = 60 * (
        5 * (generator * 256 + 6 * critic * 256 + 9 * critic * 256) + 3 * (generator + critic) * 256
    )
    assert step_flops(art_config, layout, 256, 60) == expected
    assert sampler_flops(art_config, layout, 10, 60) == generator * 600


def test_bench_writes_every_key(tmp_path, tiny_config_path):
    config = load_config(tiny_config_path)
    out = tmp_path / "bench.json"
    run_benchmark(out=out, quick=True, config=config, batch=8, sizes=(4, 16))
    figures = json.loads(out.read_text())
    for key in (
        "train_step_ms_b8_l10",
        "train_step_ms_b8_l60",
        "train_trace_s",
        "reference_keras_lstm_step_ms_b8_l60",
        "speedup_vs_keras_lstm_l60",
        "sample_patients_per_s_n4",
        "sample_patients_per_s_n16",
        "matmul_peak_gflops",
        "train_fraction_of_matmul_peak_l60",
        "peak_memory_mb",
        "device",
        "xla",
    ):
        assert key in figures, key
    assert figures["train_step_ms_b8_l10"] > 0 and figures["speedup_vs_keras_lstm_l60"] > 0


def test_bench_times_the_step_under_a_strategy(tmp_path, tiny_config_path):
    import tensorflow as tf

    config = load_config(tiny_config_path)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # the replicated path, one replica
    figures = run_benchmark(quick=True, config=config, batch=8, sizes=(4,), strategy=strategy)
    assert figures["strategy"].startswith("strategy mirrored, 1 replica(s) in sync")
    assert figures["distributed_step_ms_b8x1_l60"] > 0
    assert (
        figures["distributed_sequences_per_s_per_replica_l60"]
        == figures["distributed_sequences_per_s_l60"]
    )
    assert figures["distributed_scaling_vs_one_device_l60"] > 0
