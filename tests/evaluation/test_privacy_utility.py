import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from hg_keras.evaluation import privacy, utility


@pytest.fixture
def sets():
    rng = np.random.default_rng(0)
    return rng.random((20, 4, 3)), rng.random((15, 4, 3)), rng.random((12, 4, 3))


def test_dcr_matches_brute_force(sets):
    synthetic, train, holdout = sets
    result = privacy.distance_to_closest_record(synthetic, train, holdout)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    syn = scipy.spatial.distance.cdist(flat(synthetic), flat(train)).min(1)
    hold = scipy.spatial.distance.cdist(flat(holdout), flat(train)).min(1)
    assert result["dcr_ratio"] == pytest.approx(np.median(syn) / np.median(hold))
    assert result["exact_copies"] == 0
    copied = np.concatenate([synthetic, train[:3]])
    assert privacy.distance_to_closest_record(copied, train, holdout)["exact_copies"] == 3


def test_membership_auc_equals_mann_whitney(sets):
    synthetic, train, holdout = sets
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    members = scipy.spatial.distance.cdist(flat(train), flat(synthetic)).min(1)
    others = scipy.spatial.distance.cdist(flat(holdout), flat(synthetic)).min(1)
    u = scipy.stats.mannwhitneyu(-members, -others).statistic
    assert privacy.membership_auc(synthetic, train, holdout) == pytest.approx(
        u / (len(members) * len(others))
    )
    assert privacy.membership_auc(train, train, holdout) == 1.0


def test_attribute_disclosure_is_one_nearest_neighbour():
    synthetic_x = np.array([[0.0], [1.0], [2.0]])
    synthetic_y = np.array([0, 1, 1])
    real_x, real_y = np.array([[0.1], [1.9], [0.2], [1.1]]), np.array([0, 1, 1, 0])
    result = privacy.attribute_disclosure(synthetic_x, synthetic_y, real_x, real_y)
    assert result == {"attribute_accuracy": 0.5, "attribute_baseline": 0.5}


def test_discriminative_score_separates_obvious_fakes():
    rng = np.random.default_rng(1)
    real = rng.random((120, 5, 3))
    same = rng.random((120, 5, 3))
    fake = np.clip(rng.random((120, 5, 3)) * 0.2 + 0.8, 0, 1)
    close = utility.discriminative_score(real, same, seed=0, max_epochs=15)
    far = utility.discriminative_score(real, fake, seed=0, max_epochs=15)
    assert close < 0.2 and far > 0.4


def test_predictive_scores_ratio():
    rng = np.random.default_rng(2)
    t = np.linspace(0, 1, 6)
    real = np.clip(t[None, :, None] * rng.uniform(0.5, 1, (150, 1, 2)), 0, 1)
    result = utility.predictive_scores(real[:50], real[50:100], real[100:], [0, 1], max_epochs=15)
    assert set(result) == {"tstr_mae", "trtr_mae", "tstr_ratio"}
    assert result["tstr_ratio"] == pytest.approx(result["tstr_mae"] / result["trtr_mae"])
    noise = rng.random((50, 6, 2))
    worse = utility.predictive_scores(noise, real[50:100], real[100:], [0, 1], max_epochs=15)
    assert worse["tstr_mae"] > result["tstr_mae"]
