import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from hg_keras.data import CohortTransformer, FeatureLayout, Schema, load_cohort
from hg_keras.files import read_yaml

FIXTURES = __import__("pathlib").Path(__file__).parents[1] / "fixtures"


def tiny():
    schema = Schema.from_dict(read_yaml(FIXTURES / "tiny_schema.yaml"))
    return schema, load_cohort(FIXTURES / "tiny_cohort.csv", schema)


def assert_frames_match(decoded, source, schema):
    for variable in schema.variables:
        got = decoded[variable.name].to_numpy(np.float64)
        want = source[variable.name].to_numpy(np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        if variable.is_numeric:
            np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
        else:
            np.testing.assert_array_equal(got, want)
    for key in (schema.id, schema.time):
        np.testing.assert_array_equal(decoded[key], source[key])


def test_layout_puts_numerics_first_then_blocks_in_schema_order(art_schema):
    layout = FeatureLayout(art_schema)
    assert layout.width == 37 and layout.numeric_width == 3
    assert [b.name for b in layout.blocks][:5] == ["VL", "CD4", "Rel CD4", "Gender", "Ethnic"]
    assert (layout.block("Gender").start, layout.block("Gender").end) == (3, 5)
    assert (layout.block("Drug (M)").start, layout.block("Drug (M)").end) == (35, 37)
    assert layout.static_columns == tuple(range(3, 9))
    assert [b.embedding_size for b in layout.discrete_blocks] == [2, 4, 4, 4, 4, 4, 2, 2, 2, 2]


def test_embedded_cohort_round_trips(art_schema):
    frame = load_cohort(patients=200)
    transformer = CohortTransformer(art_schema).fit(frame)
    encoded = transformer.encode(frame, dtype=np.float64)
    assert encoded.shape == (200, 60, 37)
    assert encoded[..., :3].min() >= 0 and encoded[..., :3].max() <= 1
    assert_frames_match(transformer.decode(encoded), frame, art_schema)


def test_tiny_csv_round_trips_with_nan():
    schema, frame = tiny()
    transformer = CohortTransformer(schema).fit(frame)
    decoded = transformer.decode(transformer.encode(frame, dtype=np.float64), patient_ids=[1, 2])
    assert decoded["Weight"].isna().sum() == 1 and decoded["Stage"].isna().sum() == 1
    assert_frames_match(decoded, frame, schema)


def test_boxcox_lambda_is_scipy_mle_and_minmax_hits_unit_interval(art_schema):
    frame = load_cohort(patients=100)
    transformer = CohortTransformer(art_schema).fit(frame)
    _, expected = scipy.stats.boxcox(frame["CD4"].to_numpy() + 1e-3)
    assert transformer.numeric_params["CD4"]["lambda"] == pytest.approx(expected, rel=1e-9)
    scaled = transformer.scale("CD4", frame["CD4"].to_numpy())
    assert scaled.min() == pytest.approx(0.0, abs=1e-12)
    assert scaled.max() == pytest.approx(1.0, abs=1e-12)


def test_transforms_save_and_load(tmp_path):
    schema, frame = tiny()
    transformer = CohortTransformer(schema).fit(frame)
    transformer.save(tmp_path / "t.json")
    loaded = CohortTransformer.load(tmp_path / "t.json")
    assert loaded.numeric_params == json.loads(json.dumps(transformer.numeric_params))
    np.testing.assert_array_equal(loaded.encode(frame), transformer.encode(frame))


def test_decode_takes_argmax_of_soft_blocks():
    schema, frame = tiny()
    transformer = CohortTransformer(schema).fit(frame)
    soft = np.zeros((1, 1, transformer.layout.width))
    soft[0, 0, :2] = 0.5
    stage = transformer.layout.block("Stage")
    soft[0, 0, stage.start : stage.end] = [0.2, 0.3, 0.5]
    smoker = transformer.layout.block("Smoker")
    soft[0, 0, smoker.start : smoker.end] = [0.6, 0.4]
    row = transformer.decode(soft).iloc[0]
    assert row["Stage"] == 3 and row["Smoker"] == 0


def test_fit_uses_only_given_rows():
    schema, frame = tiny()
    first = frame[frame.PatientID == 1]
    transformer = CohortTransformer(schema).fit(first)
    assert transformer.numeric_params["Age"] == {"lambda": None, "min": 67.0, "range": 0.0}
    assert pd.isna(first["Weight"]).sum() == 1


def test_switch_share_is_a_loop_over_observed_consecutive_steps_and_is_saved(tmp_path):
    from hg_keras.data.transforms import switch_share

    rng = np.random.default_rng(4)
    codes = rng.integers(0, 3, 60).astype(float)
    codes[rng.random(60) < 0.2] = np.nan
    frame = pd.DataFrame({"pid": np.repeat(np.arange(6), 10), "code": codes})
    changes = []
    for _, patient in frame.groupby("pid"):
        values = patient["code"].to_numpy()
        for before, now in zip(values[:-1], values[1:]):
            if not (np.isnan(before) or np.isnan(now)):
                changes.append(before != now)
    assert switch_share(frame, "code", "pid") == pytest.approx(np.mean(changes))

    schema, tiny_frame = tiny()
    transformer = CohortTransformer(schema).fit(tiny_frame)
    assert transformer.switch_rates["Smoker"] == switch_share(tiny_frame, "Smoker", "PatientID")
    transformer.save(tmp_path / "t.json")
    assert CohortTransformer.load(tmp_path / "t.json").switch_rates == transformer.switch_rates
