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


def test_paired_times_in_alternation_and_takes_the_median_ratio(monkeypatch):
    from hg_keras import bench

    clock = iter([0, 1, 1, 3, 3, 4, 4, 8, 8, 9, 9, 12])  # ours 1 s each; reference 2, 4, 3 s
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    calls = []
    result = bench.paired(lambda: calls.append("a"), lambda: calls.append("b"), pairs=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then strictly alternating
    assert result["ratios"] == [2.0, 4.0, 3.0] and result["ratio"] == 3.0
    assert result["ours"] == 1.0 and result["reference"] == 3.0


def test_bench_writes_every_key_and_times_a_strategy(tmp_path, tiny_config_path):
    import tensorflow as tf

    config = load_config(tiny_config_path)
    out = tmp_path / "bench.json"
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # the replicated path, one replica
    run_benchmark(
        out=out, quick=True, config=config, batch=8, sizes=(4, 16), lengths=(6,),
        chunks=(8, 2000), strategy=strategy,
    )  # fmt: skip
    figures = json.loads(out.read_text())
    for key in (
        "train_step_ms_b8_l6",
        "train_trace_s",
        "paired_train_keras_lstm_l6_ratio",
        "paired_train_loop_vs_fused_kernel_l6_ratio",
        "paired_train_private_vs_plain_b8_l6_ratio",
        "paired_generate_loop_vs_fused_kernel_n16_ratio",
        "paired_train_seed_design_l6_ratio",
        "paired_generate_seed_design_n16_ratio",
        "generate_patients_per_s_n16",
        "sample_patients_per_s_n4",
        "sample_patients_per_s_n16",
        "sample_patients_per_s_n16_chunk8",
        "sample_patients_per_s_n16_chunk2000",
        "matmul_peak_gflops",
        "train_fraction_of_matmul_peak_l6",
        "peak_memory_mb",
        "device",
        "xla",
    ):
        assert key in figures, key
    assert len(figures["paired_train_seed_design_l6_ratios"]) == 3
    assert figures["paired_train_seed_design_l6_ratio"] > 0
    assert figures["strategy"].startswith("strategy mirrored, 1 replica(s) in sync")
    assert figures["distributed_step_ms_b8x1_l6"] > 0
    assert (
        figures["distributed_sequences_per_s_per_replica_l6"]
        == figures["distributed_sequences_per_s_l6"]
    )


def test_seed_design_lstm_is_the_numpy_reference_and_its_step_trains(art_config):
    import numpy as np
    import tensorflow as tf
    from references import reference_lstm

    from hg_keras.seed_design import SeedDesignStep

    layout = FeatureLayout(art_config.schema)
    target = np.eye(layout.width, dtype=np.float32)
    design = SeedDesignStep(layout, latent_dim=4, hidden_units=3, critic_steps=2,
                            correlation_target=target)  # fmt: skip
    lstm = design.generator["forward"]
    x = np.random.default_rng(0).random((2, 5, 4)).astype("float32")
    sequence, h = design._run_lstm(lstm, tf.constant(x))
    weights = [v.numpy().astype(np.float64) for pair in (lstm["i2h"], lstm["h2h"]) for v in pair]
    expected, h_ref, _ = reference_lstm(x.astype(np.float64), *weights)
    np.testing.assert_allclose(sequence, expected, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)

    before = [v.numpy().copy() for v in design.critic_variables + design.generator_variables]
    real = np.random.default_rng(1).random((3, 4, layout.width)).astype("float32")
    assert np.isfinite(float(design(real)))
    after = design.critic_variables + design.generator_variables
    # Every weight moves but the critic's output bias: the Wasserstein loss
    # differentiates it to mean(1) - mean(1) = 0, and the penalty not at all.
    output_bias = design.critic["linear3"][1]
    moved = [not np.array_equal(b, a.numpy()) for b, a in zip(before, after)]
    assert moved == [a is not output_bias for a in after]
