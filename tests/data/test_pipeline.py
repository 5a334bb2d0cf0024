import numpy as np
import pytest

from hg_keras.data.pipeline import (
    correlation_target,
    curriculum_dataset,
    default_curriculum,
    steps_per_epoch,
)
from hg_keras.errors import InputError


def epoch_batches(dataset):
    return [b.numpy() for b in dataset]


@pytest.fixture
def encoded():
    return np.random.default_rng(0).random((10, 6, 3)).astype("float32")


def test_curriculum_walks_lengths_with_remainder_dropped(encoded):
    batches = epoch_batches(curriculum_dataset(encoded, (2, 4, 6), batch_size=4, seed=1))
    assert [b.shape for b in batches] == [(4, 2, 3)] * 2 + [(4, 4, 3)] * 2 + [(4, 6, 3)] * 2
    assert steps_per_epoch(10, (2, 4, 6), 4) == 6
    # Each batch is a prefix of real patients.
    rows = {tuple(p.ravel()) for p in encoded[:, :2]}
    assert all(tuple(p.ravel()) in rows for p in batches[0])


def test_order_depends_on_seed_and_epoch_only(encoded):
    dataset = curriculum_dataset(encoded, (6,), batch_size=5, seed=3, epochs=2)
    batches = epoch_batches(dataset)
    first, second = batches[:2], batches[2:]
    assert not np.array_equal(first[0], second[0])
    # Iterating again gives the same epochs: nothing depends on iteration count.
    np.testing.assert_array_equal(epoch_batches(dataset)[0], first[0])
    resumed = curriculum_dataset(encoded, (6,), batch_size=5, seed=3, first_epoch=1)
    np.testing.assert_array_equal(epoch_batches(resumed)[0], second[0])
    other_seed = curriculum_dataset(encoded, (6,), batch_size=5, seed=4)
    assert not np.array_equal(epoch_batches(other_seed)[0], first[0])


def test_curriculum_longer_than_cohort_is_an_input_error(encoded):
    with pytest.raises(InputError, match="patients have 6 time steps but the curriculum needs 10"):
        curriculum_dataset(encoded, (10,), batch_size=4, seed=0)
    with pytest.raises(InputError, match="10 patients cannot fill one batch of 16"):
        curriculum_dataset(encoded, (6,), batch_size=16, seed=0)


def test_correlation_target_is_pooled_pearson(encoded):
    expected = np.corrcoef(encoded.reshape(-1, 3).astype(np.float64), rowvar=False)
    np.testing.assert_allclose(correlation_target(encoded), expected, atol=1e-6)
    prefix = np.corrcoef(encoded[:, :2].reshape(-1, 3).astype(np.float64), rowvar=False)
    np.testing.assert_allclose(correlation_target(encoded, steps=2), prefix, atol=1e-6)


def test_default_curriculum_walks_every_tenth_step_to_the_longest_patient():
    assert default_curriculum(60) == (10, 20, 30, 40, 50, 60)  # v1's
    assert default_curriculum(16) == (10, 16)
    assert default_curriculum(6) == (6,)
    assert default_curriculum(10) == (10,)
