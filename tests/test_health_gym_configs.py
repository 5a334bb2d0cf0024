"""The Health Gym sepsis and hypotension schemas on small simulated stand-ins."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from cohorts import hypotension_cohort, sepsis_cohort

from cli import cli
from hg_keras.config import builtin_config_path, load_config
from hg_keras.data.cohort import validate_cohort
from hg_keras.data.transforms import CohortTransformer

TINY = """\
extends: {name}
model:
  latent_dim: 4
  patient_latent_dim: 2
  slow_noise_dim: 1
  hidden_units: 8
training:
  batch_size: 16
  epochs: 1
  curriculum: {curriculum}
  critic_steps: 1
"""


def test_sepsis_schema_is_the_academic_one():
    schema = load_config("sepsis").schema
    kinds = [v.kind for v in schema.variables]
    assert kinds.count("numeric") == 37 and kinds.count("binary") == 3
    assert schema.variable("Vitl001_GCS").codes == tuple(range(3, 16))
    assert schema.variable("Labs026_Lactate").transform == "log"
    assert schema.variable("Vitl002_HR").transform == "minmax"
    assert {v.name for v in schema.variables if v.static} == {
        "Demo001_Gender", "Demo002_Age", "Demo003_ReAd",
    }  # fmt: skip
    assert schema.variable_length


def test_hypotension_schema_models_missingness_indicators():
    schema = load_config("hypotension").schema
    indicated = [v.name for v in schema.variables if v.missing == "indicator"]
    assert len(indicated) == 8 and "MAP" not in indicated
    modelled = schema.modelled()
    assert [v.name for v in modelled.variables if v.name.endswith("_observed")] == [
        f"{name}_observed" for name in indicated
    ]


def test_hypotension_round_trip_keeps_the_missing_pattern():
    schema = load_config("hypotension").schema
    frame = validate_cohort(hypotension_cohort(schema, patients=12), schema)
    assert frame["ALT"].isna().mean() > 0.8  # most hours unmeasured
    transformer = CohortTransformer(schema).fit(frame)
    encoded = transformer.encode(frame, dtype=np.float64)
    assert encoded.shape == (12, 48, transformer.layout.width) and not np.isnan(encoded).any()
    decoded = transformer.decode(encoded, patient_ids=frame["PatientID"].unique())
    pd.testing.assert_frame_equal(decoded.isna(), frame.isna())
    observed = frame["urine"].notna()
    np.testing.assert_allclose(decoded["urine"][observed], frame["urine"][observed], rtol=1e-6)


@pytest.mark.parametrize(
    "name, simulate, curriculum",
    [("sepsis", sepsis_cohort, [5, 20]), ("hypotension", hypotension_cohort, [12, 48])],
)
def test_health_gym_config_trains_and_samples(tmp_path, name, simulate, curriculum):
    schema = load_config(name).schema
    simulate(schema).to_csv(tmp_path / "cohort.csv", index=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(name=builtin_config_path(name), curriculum=curriculum))
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        cli,
        ["train", "--config", str(config), "--data", str(tmp_path / "cohort.csv"),
         "--out", str(out), "--no-evaluation", "--no-export"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    synthetic = tmp_path / "synthetic.csv"
    result = runner.invoke(
        cli, ["sample", "--model", str(out), "--n", "20", "--out", str(synthetic)]
    )
    assert result.exit_code == 0, result.output
    frame = validate_cohort(pd.read_csv(synthetic), schema, source="synthetic.csv")
    lengths = frame.groupby("PatientID").size()
    assert len(lengths) == 20
    if name == "sepsis":
        assert lengths.between(1, 20).all()
    else:
        assert (lengths == 48).all()


def test_a_non_art_config_without_data_asks_for_it(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--config", "sepsis", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "the embedded cohort is ART for HIV; this config's schema needs --data" in result.output
