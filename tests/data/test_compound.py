"""Compound variables: discrete columns modelled as one over their combinations."""

import dataclasses

import numpy as np
import pytest
from conftest import carrying

from hg_keras.data import CohortTransformer, simulate_art4hiv
from hg_keras.data import compound as compound_module
from hg_keras.data.compound import Compound, combination_codes, find_compounds

DRUGS = ("Base Drug Combo", "Comp. INI", "Comp. NNRTI", "Extra PI", "Extra pk-En")
FLAGS = ("VL (M)", "CD4 (M)", "Drug (M)")


@pytest.fixture(scope="module")
def cohort():
    return simulate_art4hiv(200, seed=3)


@pytest.fixture(scope="module")
def joint(art_schema, cohort):
    return CohortTransformer(carrying(art_schema), joint=True).fit(cohort)


def test_columns_of_like_persistence_become_one_variable_over_the_seen_combinations(joint, cohort):
    by_members = {c.members: c for c in joint.compounds}
    assert set(by_members) == {DRUGS, FLAGS}  # regimens persist; missed-visit flags do not
    for members, compound in by_members.items():
        counts = cohort[list(members)].value_counts()
        assert set(compound.combinations) == set(map(tuple, counts.index))
        shares = [counts[combo] for combo in compound.combinations]
        assert shares == sorted(shares, reverse=True)  # most frequent first
    names = [v.name for v in joint.model_schema.variables]
    assert names[:5] == ["VL", "CD4", "Rel CD4", "Gender", "Ethnic"]
    assert names[5:] == [" + ".join(DRUGS), " + ".join(FLAGS)]
    drugs = joint.layout.block(" + ".join(DRUGS))
    assert drugs.end - drugs.start == len(by_members[DRUGS].combinations)
    assert joint.renewal_rates[" + ".join(DRUGS)] < 0.5 <= joint.renewal_rates[" + ".join(FLAGS)]


def test_encoding_round_trips_exactly_and_survives_saving(joint, cohort, tmp_path):
    encoded = joint.encode(cohort, dtype=np.float64)
    decoded = joint.decode(encoded)
    assert list(decoded.columns) == list(cohort.columns)
    for column in cohort.columns:
        np.testing.assert_allclose(decoded[column], cohort[column], rtol=1e-9)
    # Each month's regimen is one level of the compound, the one holding its drugs.
    compound = next(c for c in joint.compounds if c.members == DRUGS)
    block = joint.layout.block(compound.name)
    levels = encoded[..., block.start : block.end].reshape(-1, block.end - block.start)
    assert (levels.sum(-1) == 1).all()
    held = np.asarray(compound.combinations)[levels.argmax(-1)]
    np.testing.assert_array_equal(held, cohort[list(DRUGS)].to_numpy())

    joint.save(tmp_path / "t.json")
    loaded = CohortTransformer.load(tmp_path / "t.json")
    assert loaded.compounds == joint.compounds
    assert loaded.layout.carried == joint.layout.carried
    np.testing.assert_array_equal(loaded.encode(cohort, dtype=np.float64), encoded)


def test_a_flag_inside_a_compound_carries_with_every_level_that_holds_it(joint):
    flags = next(c for c in joint.compounds if c.members == FLAGS)
    start = joint.layout.block(flags.name).start
    vl_flagged = [start + k for k, combo in enumerate(flags.combinations) if combo[0] == 1]
    cd4_flagged = [start + k for k, combo in enumerate(flags.combinations) if combo[1] == 1]
    assert vl_flagged and cd4_flagged
    assert joint.layout.carried == ([0, 1, *vl_flagged], [1, 2, *cd4_flagged], [2, 3, *cd4_flagged])


def test_an_unseen_combination_maps_to_the_closest_then_most_frequent():
    combinations = [(0, 0, 0), (1, 1, 1), (0, 1, 1)]
    rows = np.array([(1, 1, 1), (1, 1, 0), (0, 1, 0), (1, 0, 0)], dtype=np.float64)

    def reference(row):
        matches = [sum(a == b for a, b in zip(row, combo)) for combo in combinations]
        return matches.index(max(matches))

    want = [reference(row) for row in rows]
    assert want == [1, 1, 0, 0]
    np.testing.assert_array_equal(combination_codes(rows, combinations), want)


def test_a_group_with_too_many_combinations_stays_separate(joint, cohort, monkeypatch):
    schema = CohortTransformer(joint.schema).model_schema
    monkeypatch.setattr(compound_module, "MAX_COMBINATIONS", 8)
    found = find_compounds(cohort, schema, joint.renewal_rates | dict.fromkeys(DRUGS, 0.0))
    assert [c.members for c in found] == [FLAGS]  # 16 regimens > 8; 8 flag combinations fit


def test_without_joint_nothing_is_compounded(art_schema, cohort):
    transformer = CohortTransformer(art_schema).fit(cohort)
    assert transformer.compounds == [] and transformer.layout.width == 37
    assert "compounds" not in transformer.to_dict()


def test_compound_round_trips_as_a_dict():
    compound = Compound(("a", "b"), ((0, 1), (1, 0)))
    assert Compound.from_dict(compound.to_dict()) == compound
    variable = compound.variable()
    assert variable.codes == (0, 1) and variable.labels == ("a=0, b=1", "a=1, b=0")
    assert compound.levels_with("b", 0) == [1]
    assert dataclasses.replace(compound, members=("a", "c")).name == "a + c"
