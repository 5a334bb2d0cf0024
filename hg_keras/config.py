"""Run configuration: the schema, the model sizes and the training settings.

A config is one YAML file with three sections, ``schema``, ``model`` and
``training``; a file may start with ``extends: other.yaml`` (a path beside it, or
the name of a shipped config such as ``art4hiv``) and override only
what differs (``configs/quick.yaml`` extends ``configs/art4hiv.yaml``). The
defaults are Health Gym v1's values (Kuo et al., Sci. Data 2022,
doi:10.1038/s41597-022-01784-7). A run saves the exact config it used beside
its model.
"""

import dataclasses
import importlib.resources
from pathlib import Path

from hg_keras.data.schema import TRANSFORMS, Schema
from hg_keras.errors import InputError
from hg_keras.files import check_keys, read_yaml, write_yaml


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Generator and critic sizes.

    Args:
        latent_dim: int, noise features per time step (v1: 128).
        latent_distribution: str, ``uniform`` (v1's U[0, 1)) or ``normal``.
        hidden_units: int, LSTM and dense width (v1: 128).
        align_backward: bool, flip the generator's backward LSTM stream back
            into time order before concatenation (v1 did not: False).
        static_head: str, ``pooled`` makes static attributes one value per
            patient; ``v1`` lets them vary month to month as v1 did.
        discrete_output: str, how a generated probability block becomes a
            code: ``argmax`` (v1) or ``sample`` (a level drawn with the
            generated probabilities, once per patient for static blocks),
            which keeps the rates of rare levels and of missing values that
            argmax rounds away, but draws every month afresh; or
            ``persistent``: a level drawn per patient and block at month 0
            and carried over with as few changes as the generated
            probabilities allow (maximal coupling), renewed at the data's
            rate (rare-level rates kept, switch rates those of the
            probabilities);
            or ``joint``: ``persistent``, with the time-varying discrete
            columns of like persistence (a regimen's drugs; a visit's
            missing-measurement flags) modelled as one variable over the
            combinations the training patients hold
            (:mod:`hg_keras.data.compound`), so no synthetic month pairs
            drugs that never go together.
        conditional: bool, condition the generator on the static discrete
            attributes (given, not generated), which enables
            ``sample --where``; v1 is unconditional.
        patient_latent_dim: int, noise channels held constant over a
            patient's months (a per-patient latent); 0 is v1.
        step_scores: bool, the critic also scores every month, not only its
            final states (v1: false).
        numeric_margin: float, 0 is v1's sigmoid; > 0 stretches the
            numerics' sigmoid this far past [0, 1] and clips it, so values
            on the bounds of the training range (a detection limit, a capped
            percentage) can be generated ("censored" head).
        carry_forward: str, ``declared`` (v1: only the schema's
            ``carried_when`` rules) or ``detect``: training also declares
            each numeric that repeats its previous step in every training
            row where a time-varying binary flag holds a code, and rarely
            elsewhere (last observation carried forward;
            :func:`hg_keras.data.derived.detect_carried`). The run's saved
            config lists what was found.
        group_effects: bool or ``detect``, default true: a conditional
            generator's recurrent layers see the static groups; false only
            imposes them on its output, so the time-varying variables are
            generated independently of them (right only for a cohort whose
            groups do not differ; the evaluation's correlation MAE shows what
            is lost). ``detect`` decides at training from the training
            patients (:func:`hg_keras.conditions.detect_group_effects`) and
            saves the answer in the run's config.
        numeric_transforms: mapping of numeric variable to ``boxcox``,
            ``log`` or ``minmax``: how the model encodes it, in place of the
            schema's ``transform`` (empty: the schema's, v1). The schema's
            stays what the evaluation measures with, so runs that encode
            differently are graded alike. A Box-Cox fitted to a tight bulk
            and a long tail squeezes the tail: the embedded cohort's viral
            load (lambda -0.70) puts 1,000 to 90,000 copies/mL in the top
            2% of [0, 1], where neither loss nor critic tells a rebound
            from a suppressed month.
    """

    latent_dim: int = 128
    latent_distribution: str = "uniform"
    hidden_units: int = 128
    align_backward: bool = True
    static_head: str = "pooled"
    discrete_output: str = "argmax"
    conditional: bool = False
    patient_latent_dim: int = 0
    step_scores: bool = False
    numeric_margin: float = 0.0
    carry_forward: str = "declared"
    group_effects: bool | str = True
    numeric_transforms: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """WGAN-GP training settings (v1 values).

    Args:
        patients: int or None, how many patients to train on (None: all).
        batch_size: int, sequences per batch (v1: 256, remainder dropped).
        epochs: int, passes over the whole curriculum.
        curriculum: tuple of int, prefix lengths walked in every epoch.
        critic_steps: int, critic updates per generator update (v1: 5).
        gradient_penalty_weight: float, lambda of the gradient penalty (v1: 10).
        correlation_weight: float, weight of the correlation alignment (v1: 10).
        learning_rate, beta_1, beta_2: Adam settings for both networks.
        seed: int, seeds data order, noise and initial weights.
        rebalance: bool, draw each epoch's patients so that every group of
            static discrete attributes (e.g. Gender x Ethnic) is equally
            frequent, against v1's collapse onto the majority group. Needs a
            conditional model, whose sampling restores the real group frequencies.
        marginal_weight: float, weight of the marginal alignment loss (v1: 0).
        temporal_weight: float, weight of the autocorrelation and switch-rate
            alignment loss (v1: 0).
        increment_weight: float, weight of the alignment of the numerics'
            month-to-month changes (their distribution, as a marginal; v1: 0).
        confidence_weight: float, weight of the entropy of the persistent
            discrete variables' generated probabilities (v1: 0): a decided
            regimen instead of a hedge drawn drug by drug.
        profile_weight: float, weight of the month-by-month means of every
            encoded column against the training cohort's (v1: 0): events in the
            right months, not only at the right overall rate.
        group_weight: float, weight of each demographic group's means of
            the time-varying variables against the same group's in the real
            batch (v1: 0): each group's values as in the data, not used as a
            source of variety between patients.
        trend_weight: float, weight of the share of patients whose numerics'
            linear trends agree in sign, against the real batch (v1: 0): what
            the evaluation's trend correlation grades.
        summary_weight: float, weight of the spread over patients of each
            numeric's own mean, minimum and maximum against the real batch
            (v1: 0): a rare kind of patient (a viral rebound, a naive start)
            is a few percent of the months but many patients' maxima.
        generator_average: float, 0 (v1) or the momentum of an exponential
            moving average of the generator's weights (Adam's ``use_ema``),
            which the run saves instead of the last weights: a GAN's
            generator oscillates around its equilibrium, and the average
            of its recent weights sits nearer it (Yazici et al. 2019,
            arXiv:1806.04498). 0.99 averages about the last 100 updates.
        critic_learning_rate: float or None, the critic's Adam learning rate
            (None: `learning_rate`, as v1); a larger one is the two time-scale
            update rule (Heusel et al. 2017, arXiv:1706.08500).
        learning_rate_decay: float in [0, 1), the share of both learning
            rates removed, along a half cosine, by the last update of the
            configured epochs (0: constant, v1; 0.9 ends at a tenth). A
            constant rate keeps a GAN's generator moving to the end, so a
            short run stops at a random point of its oscillation; a decayed
            one settles. A resumed run continues the schedule; updates past
            the configured epochs keep the final rate.
        straight_through: bool, show the critic one-hot levels drawn from
            the generated probabilities (as ``discrete_output`` draws them),
            with straight-through gradients, instead of the probabilities
            themselves (v1: false).
        holdout: float or int, real patients held out of training for the
            run's evaluation: a fraction of the cohort (0 < h < 1) or a count
            (h >= 1), drawn by seed within each static group; 0 trains on
            every patient. The embedded cohort holds out its next patients
            instead (as many as are trained on, at most this many).
    """

    patients: int | None = None
    batch_size: int = 256
    epochs: int = 200
    curriculum: tuple = (10, 20, 30, 40, 50, 60)
    critic_steps: int = 5
    gradient_penalty_weight: float = 10.0
    correlation_weight: float = 10.0
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.99
    seed: int = 42
    rebalance: bool = False
    marginal_weight: float = 0.0
    temporal_weight: float = 0.0
    increment_weight: float = 0.0
    confidence_weight: float = 0.0
    profile_weight: float = 0.0
    group_weight: float = 0.0
    trend_weight: float = 0.0
    summary_weight: float = 0.0
    generator_average: float = 0.0
    critic_learning_rate: float | None = None
    learning_rate_decay: float = 0.0
    straight_through: bool = False
    holdout: float = 0.2


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs to be repeated."""

    schema: Schema
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()

    def replace_training(self, **changes):
        """Returns a copy with training fields changed (None values ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **changes))

    def to_dict(self):
        training = dataclasses.asdict(self.training)
        training["curriculum"] = list(training["curriculum"])
        return {
            "schema": self.schema.to_dict(),
            "model": dataclasses.asdict(self.model),
            "training": training,
        }

    @classmethod
    def from_dict(cls, data, where="config"):
        check_keys(data, {"schema", "model", "training"}, where)
        if "schema" not in data:
            raise InputError(f"{where}: missing section 'schema'")
        schema = Schema.from_dict(data["schema"], f"{where}: schema")
        model = _section(ModelConfig, data.get("model") or {}, f"{where}: model")
        training = _section(TrainingConfig, data.get("training") or {}, f"{where}: training")
        _validate(model, training, where)
        if model.conditional and not schema.static_discrete:
            raise InputError(
                f"{where}: model.conditional needs a static binary or categorical variable "
                "in the schema"
            )
        _check_transforms(model.numeric_transforms, schema, where)
        if model.group_effects is not True and not model.conditional:
            raise InputError(
                f"{where}: model.group_effects: {str(model.group_effects).lower()} needs "
                "model.conditional: true"
            )
        if training.rebalance and not model.conditional:
            raise InputError(f"{where}: training.rebalance needs model.conditional: true")
        return cls(schema=schema, model=model, training=training)


def _section(kind, values, where):
    if not isinstance(values, dict):
        raise InputError(f"{where}: expected a mapping")
    fields = {field.name: field for field in dataclasses.fields(kind)}
    check_keys(values, set(fields), where)
    values = dict(values)
    for name, value in values.items():
        default = fields[name].default
        if name == "numeric_transforms":
            if not isinstance(value, dict):
                raise InputError(
                    f"{where}: numeric_transforms must map variables to transforms, got '{value}'"
                )
        elif name == "curriculum":
            if not isinstance(value, list) or not value:
                raise InputError(f"{where}: curriculum must be a non-empty list of lengths")
            values[name] = tuple(value)
        elif name == "group_effects":
            continue  # true, false or detect: _validate
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise InputError(f"{where}: {name} must be true or false, got '{value}'")
        elif isinstance(default, float) or name == "critic_learning_rate":
            if value is None and name == "critic_learning_rate":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{where}: {name} must be a number, got '{value}'")
            values[name] = float(value)
        elif isinstance(default, int) or name == "patients":
            if value is None and name == "patients":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{where}: {name} must be an integer, got '{value}'")
    return kind(**values)


def _check_transforms(transforms, schema, where):
    numeric = {v.name for v in schema.variables if v.is_numeric}
    for name, transform in transforms.items():
        if name not in numeric:
            raise InputError(
                f"{where}: model.numeric_transforms: '{name}' is not a numeric variable "
                f"of the schema ({', '.join(sorted(numeric)) or 'none'})"
            )
        if transform not in TRANSFORMS:
            raise InputError(
                f"{where}: model.numeric_transforms: {name}: '{transform}' is not one of "
                f"{', '.join(TRANSFORMS)}"
            )


def _validate(model, training, where):
    positive = {
        "model.latent_dim": model.latent_dim,
        "model.hidden_units": model.hidden_units,
        "training.batch_size": training.batch_size,
        "training.epochs": training.epochs,
        "training.critic_steps": training.critic_steps,
        "training.learning_rate": training.learning_rate,
    }
    if training.patients is not None:
        positive["training.patients"] = training.patients
    if training.critic_learning_rate is not None:
        positive["training.critic_learning_rate"] = training.critic_learning_rate
    non_negative = {
        "model.patient_latent_dim": model.patient_latent_dim,
        "model.numeric_margin": model.numeric_margin,
        "training.marginal_weight": training.marginal_weight,
        "training.temporal_weight": training.temporal_weight,
        "training.increment_weight": training.increment_weight,
        "training.confidence_weight": training.confidence_weight,
        "training.profile_weight": training.profile_weight,
        "training.group_weight": training.group_weight,
        "training.trend_weight": training.trend_weight,
        "training.summary_weight": training.summary_weight,
        "training.holdout": training.holdout,
    }
    for name, value in non_negative.items():
        if value < 0:
            raise InputError(f"{where}: {name} must be zero or positive, got {value}")
    if not 0 <= training.learning_rate_decay < 1:
        raise InputError(
            f"{where}: training.learning_rate_decay must be at least 0 and below 1, "
            f"got {training.learning_rate_decay}"
        )
    if not 0 <= training.generator_average < 1:
        raise InputError(
            f"{where}: training.generator_average must be 0 for off or a momentum below 1, "
            f"got {training.generator_average}"
        )
    if training.holdout >= 1 and training.holdout != int(training.holdout):
        raise InputError(
            f"{where}: training.holdout must be a fraction below 1 or a whole count, "
            f"got {training.holdout}"
        )
    if model.patient_latent_dim > model.latent_dim:
        raise InputError(
            f"{where}: model.patient_latent_dim ({model.patient_latent_dim}) cannot exceed "
            f"model.latent_dim ({model.latent_dim})"
        )
    for name, value in positive.items():
        if value <= 0:
            raise InputError(f"{where}: {name} must be positive, got {value}")
    if model.latent_distribution not in ("uniform", "normal"):
        raise InputError(
            f"{where}: model.latent_distribution must be uniform or normal, "
            f"got '{model.latent_distribution}'"
        )
    if model.static_head not in ("pooled", "v1"):
        raise InputError(
            f"{where}: model.static_head must be pooled or v1, got '{model.static_head}'"
        )
    if model.discrete_output not in ("argmax", "sample", "persistent", "joint"):
        raise InputError(
            f"{where}: model.discrete_output must be argmax, sample, persistent or joint, "
            f"got '{model.discrete_output}'"
        )
    if not isinstance(model.group_effects, bool) and model.group_effects != "detect":
        raise InputError(
            f"{where}: model.group_effects must be true, false or detect, "
            f"got '{model.group_effects}'"
        )
    if model.carry_forward not in ("declared", "detect"):
        raise InputError(
            f"{where}: model.carry_forward must be declared or detect, got '{model.carry_forward}'"
        )
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in training.curriculum):
        raise InputError(f"{where}: training.curriculum must hold positive integers")
    if list(training.curriculum) != sorted(set(training.curriculum)):
        raise InputError(f"{where}: training.curriculum must be strictly increasing")


def builtin_config_path(name):
    """Path of a config shipped with the package (``art4hiv``, ``quick``)."""
    try:
        folder = Path(str(importlib.resources.files("hg_keras.configs")))
    except ModuleNotFoundError:
        # Editable installs and plain checkouts: configs/ sits beside the package.
        folder = Path(__file__).resolve().parents[1] / "configs"
    return folder / f"{name}.yaml"


def load_config(path):
    """Loads a config file, following ``extends`` chains.

    Args:
        path: str or Path of a YAML file, or the name of a shipped config.

    Raises:
        InputError: broken YAML, unknown keys (with a suggestion) or bad values.
    """
    path = Path(path)
    if not path.suffix and not path.exists():
        path = builtin_config_path(str(path))
    return Config.from_dict(_resolve(path, seen=()), where=str(path))


def _resolve(path, seen):
    if path.resolve() in seen:
        raise InputError(f"{path}: 'extends' loops back to itself")
    data = read_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    base_path = path.parent / base
    if not Path(base).suffix and not base_path.exists():
        base_path = builtin_config_path(base)  # "extends: art4hiv" names a shipped config
    merged = _resolve(base_path, seen + (path.resolve(),))
    for section, values in data.items():
        if (
            isinstance(values, dict)
            and isinstance(merged.get(section), dict)
            and section != "schema"
        ):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def save_config(config, path):
    """Writes the full, resolved config (no ``extends``) atomically."""
    write_yaml(path, config.to_dict())
