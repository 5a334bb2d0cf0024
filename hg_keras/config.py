"""Run configuration: the schema, the model sizes and the training settings.

A config is one YAML file with three sections, ``schema``, ``model`` and
``training``; only ``schema`` is required. A file may start with
``extends: other.yaml`` (a path beside it, or the name of a shipped config
such as ``art4hiv``) and override only what differs. The defaults are the
best settings measured (QUALITY.md), for any cohort;
``configs/art4hiv.yaml`` pins every field to Health Gym v1's value (Kuo et
al., Sci. Data 2022, doi:10.1038/s41597-022-01784-7). A run saves the exact
config it used beside its model.
"""

import dataclasses
import importlib.resources
import typing
from pathlib import Path

from hg_keras.alignment import check_term
from hg_keras.data.schema import Schema
from hg_keras.errors import InputError
from hg_keras.files import check_keys, read_yaml, write_yaml
from hg_keras.privacy import Privacy, check_schema, private_settings

# The alignment terms and weights that won benchmarks/quality.py (QUALITY.md).
ALIGNMENT = {
    "correlation": 30.0,
    "marginal": 300.0,
    "temporal": 100.0,
    "increment": 250.0,
    "confidence": 10.0,
    "trend": 10.0,
    "tails": 100.0,
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Generator and critic: the best measured settings by default, v1's in brackets.

    Levers that need a structure the cohort lacks fall back to v1's
    behaviour: ``conditional`` without static discrete variables,
    ``joint`` without discrete columns of like persistence,
    ``carry_forward: detect`` without a value carried under a flag.

    Args:
        latent_dim: int, noise features per time step (v1: 128).
        latent_distribution: str, ``uniform`` (v1's U[0, 1)) or ``normal``.
        hidden_units: int, LSTM and dense width (v1: 128).
        patient_latent_dim: int, noise channels held constant over a
            patient's months (a per-patient latent; v1: 0).
        slow_noise_dim: int, the next noise channels made slow: AR(1)
            series whose consecutive steps correlate at `slow_noise_memory`
            (v1: 0, fresh noise every step).
        slow_noise_memory: float in [0, 1).
        align_backward: bool, flip the generator's backward LSTM stream back
            into time order before concatenation (v1 did not).
        static_head: str, ``pooled`` makes static attributes one value per
            patient; ``v1`` lets them vary month to month as v1 did.
        step_scores: bool, the critic also scores every month, not only its
            final states (v1: false).
        numeric_margin: float, 0 is v1's sigmoid; > 0 stretches the
            numerics' sigmoid this far past [0, 1] and clips it, so values
            on the bounds of the training range (a detection limit, a capped
            percentage) can be generated.
        discrete_output: str, how a generated probability block becomes a
            code: ``argmax`` (v1); ``sample`` (drawn with the generated
            probabilities every month); ``persistent`` (drawn per patient at
            month 0 and carried with as few changes as the probabilities
            allow, renewed at the data's rate); or ``joint`` (``persistent``,
            with time-varying discrete columns of like persistence, such as
            a regimen's drugs, modelled as one variable over the
            combinations the training patients hold,
            :mod:`hg_keras.data.compound`).
        conditional: bool, condition the generator on the static discrete
            attributes (given at their real frequencies, not generated),
            which enables ``sample --where`` (v1: false).
        carry_forward: str, ``declared`` (v1: only the schema's
            ``carried_when`` rules) or ``detect``: training also declares
            each numeric that repeats its previous step wherever a
            time-varying binary flag holds a code
            (:func:`hg_keras.data.derived.detect_carried`); the run's saved
            config lists what was found.
    """

    latent_dim: int = 64
    latent_distribution: str = "uniform"
    hidden_units: int = 64
    patient_latent_dim: int = 16
    slow_noise_dim: int = 16
    slow_noise_memory: float = 0.8
    align_backward: bool = True
    static_head: str = "pooled"
    step_scores: bool = True
    numeric_margin: float = 0.1
    discrete_output: str = "joint"
    conditional: bool = True
    carry_forward: str = "detect"


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """WGAN-GP training: the best measured settings by default, v1's in brackets.

    Args:
        patients: int or None, train on at most this many patients (None:
            every patient left after the holdout).
        holdout: float or int, real patients held out of training for the
            run's evaluation: a fraction of the cohort (0 < h < 1) or a count
            (h >= 1), drawn by seed within each static group; 0 trains on
            every patient. The embedded cohort holds out its next patients
            instead (as many as are trained on).
        validation: float or int, training patients kept out of the GAN's
            batches to choose the released generator: a fraction or a count,
            drawn like the holdout. At `checks` points of the budget the
            generator is scored by the discriminative judge against them,
            and the best snapshot is the run's generator (RCGAN chose its
            epoch this way). 0, or fewer than ``MIN_VALIDATION`` patients,
            keeps the last generator (v1).
        checks: int, evenly spaced snapshots scored against the validation
            patients (the last epoch always is one).
        updates: int or None, generator updates to train for, whatever the
            cohort's size (a whole number of epochs, rounded up); None:
            `epochs` decides.
        epochs: int or None, passes over the whole curriculum, when
            `updates` is None (v1: 200).
        minutes: float or None, stop at the first epoch end after this many
            minutes of training (None: no clock).
        batch_size: int, sequences per batch (v1: 256, remainder dropped;
            lowered to the cohort's size).
        curriculum: tuple of int or None, prefix lengths walked in every
            epoch (v1: 10, 20, ..., 60); None: every tenth step up to the
            cohort's longest patient.
        critic_steps: int, critic updates per generator update (v1: 5).
        gradient_penalty_weight: float, lambda of the gradient penalty (v1: 10).
        alignment: mapping of alignment term name to weight: the
            generator's terms beyond the adversarial one
            (:mod:`hg_keras.alignment`; v1: ``{correlation: 10}``). A config
            that sets it gives the whole mapping.
        learning_rate, beta_1, beta_2: Adam settings for both networks.
        rebalance: bool, draw each epoch's patients so that every group of
            static discrete attributes is equally frequent (needs a
            conditional model, whose sampling restores the real frequencies).
        privacy: :class:`hg_keras.privacy.Privacy` or None: train with
            differential privacy, e.g. ``{epsilon: 3}`` (with ``delta`` and
            ``clip_norm``). Levers that read the data outside the critic are
            then off (``hg_keras.privacy.SWITCHED_OFF``), but the alignment
            terms of ``privacy.release``, which align with noised marginals.
        seed: int, seeds the holdout, data order, noise and initial weights
            (a private run's DP noise has a secret key of its own).
    """

    patients: int | None = None
    holdout: float = 0.2
    validation: float = 0.1
    checks: int = 6
    updates: int | None = 768
    epochs: int | None = None
    minutes: float | None = None
    batch_size: int = 64
    curriculum: tuple | None = None
    critic_steps: int = 2
    gradient_penalty_weight: float = 10.0
    alignment: dict = dataclasses.field(default_factory=lambda: dict(ALIGNMENT))
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.99
    rebalance: bool = False
    privacy: Privacy | None = None
    seed: int = 42


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs to be repeated."""

    schema: Schema
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()

    def replace_training(self, **changes):
        """Returns a copy with training fields changed (None values ignored).

        The budget is one of `updates`, `epochs` and `minutes`: a new one
        replaces the others unless they are given too (then `minutes` caps
        the other).
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        if isinstance(changes.get("privacy"), dict):
            # Given fields replace the config's; the noise is calibrated again.
            base = dataclasses.asdict(self.training.privacy) if self.training.privacy else {}
            calibrated = ("noise_multiplier", "release_noise")
            base = {k: v for k, v in base.items() if v is not None and k not in calibrated}
            changes["privacy"] = Privacy.from_dict({**base, **changes["privacy"]}, "privacy")
        budget = {"updates", "epochs", "minutes"} & set(changes)
        if budget:
            for name in {"updates", "epochs"} - budget:
                changes[name] = None
            if "minutes" not in budget:
                changes["minutes"] = None
        config = dataclasses.replace(self, training=dataclasses.replace(self.training, **changes))
        return config._private("privacy") if "privacy" in changes else config

    def _private(self, where):
        """This config, with what a private run needs (:mod:`hg_keras.privacy`)."""
        if self.training.privacy is None:
            return self
        check_schema(self.schema, where)
        model, training = private_settings(self.model, self.training)
        return dataclasses.replace(self, model=model, training=training)

    def to_dict(self):
        training = dataclasses.asdict(self.training)
        if training["curriculum"] is not None:
            training["curriculum"] = list(training["curriculum"])
        if training["privacy"] is None:
            del training["privacy"]
        else:
            training["privacy"]["release"] = list(training["privacy"]["release"])
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
        training = data.get("training") or {}
        if isinstance(training, dict) and BUDGET & set(training):
            # A section that names its budget does not inherit another from the defaults.
            training = {**dict.fromkeys(BUDGET), **training}
        training = _section(TrainingConfig, training, f"{where}: training")
        _validate(model, training, where)
        if training.rebalance and not (model.conditional and schema.static_discrete):
            raise InputError(
                f"{where}: training.rebalance needs model.conditional: true and a static "
                "binary or categorical variable in the schema"
            )
        if model.conditional and not schema.static_discrete:
            # Nothing to condition on: the generator makes every column, as v1's does.
            model = dataclasses.replace(model, conditional=False)
        return cls(schema=schema, model=model, training=training)._private(where)


NULLABLE = {"patients", "updates", "epochs", "minutes", "curriculum", "privacy"}
BUDGET = {"updates", "epochs", "minutes"}


def _section(kind, values, where):
    if not isinstance(values, dict):
        raise InputError(f"{where}: expected a mapping")
    fields = {field.name: field for field in dataclasses.fields(kind)}
    check_keys(values, set(fields), where)
    values = dict(values)
    numbers = {float: (int, float), int: (int,)}
    for name, value in values.items():
        kind_name = typing.get_args(fields[name].type)[:1] or (fields[name].type,)
        kind_name = kind_name[0]
        if value is None and name in NULLABLE:
            continue
        if name == "alignment":
            if not isinstance(value, dict):
                raise InputError(f"{where}: alignment must map term names to weights")
            for term, weight in value.items():
                check_term(term, weight, f"{where}: alignment")
            values[name] = {str(k): float(v) for k, v in value.items()}
        elif name == "privacy":
            values[name] = Privacy.from_dict(value, where)
        elif name == "curriculum":
            if not isinstance(value, list) or not value:
                raise InputError(f"{where}: curriculum must be a non-empty list of lengths")
            values[name] = tuple(value)
        elif kind_name is bool:
            if not isinstance(value, bool):
                raise InputError(f"{where}: {name} must be true or false, got '{value}'")
        elif kind_name in numbers:
            if isinstance(value, bool) or not isinstance(value, numbers[kind_name]):
                noun = "a number" if kind_name is float else "an integer"
                raise InputError(f"{where}: {name} must be {noun}, got '{value}'")
            if kind_name is float:
                values[name] = float(value)
    return kind(**values)


def _validate(model, training, where):
    positive = {
        "model.latent_dim": model.latent_dim,
        "model.hidden_units": model.hidden_units,
        "training.batch_size": training.batch_size,
        "training.critic_steps": training.critic_steps,
        "training.checks": training.checks,
        "training.learning_rate": training.learning_rate,
    }
    for name in ("patients", "updates", "epochs", "minutes"):
        if getattr(training, name) is not None:
            positive[f"training.{name}"] = getattr(training, name)
    if training.updates is not None and training.epochs is not None:
        raise InputError(
            f"{where}: training.updates and training.epochs are both set; "
            "set the one you do not want to null"
        )
    if training.updates is None and training.epochs is None and training.minutes is None:
        raise InputError(f"{where}: training needs one budget: updates, epochs or minutes")
    non_negative = {
        "model.patient_latent_dim": model.patient_latent_dim,
        "model.slow_noise_dim": model.slow_noise_dim,
        "model.slow_noise_memory": model.slow_noise_memory,
        "model.numeric_margin": model.numeric_margin,
        "training.holdout": training.holdout,
        "training.validation": training.validation,
    }
    for name, value in non_negative.items():
        if value < 0:
            raise InputError(f"{where}: {name} must be zero or positive, got {value}")
    for name in ("holdout", "validation"):
        value = getattr(training, name)
        if value >= 1 and value != int(value):
            raise InputError(
                f"{where}: training.{name} must be a fraction below 1 or a whole count, got {value}"
            )
    if model.patient_latent_dim + model.slow_noise_dim > model.latent_dim:
        raise InputError(
            f"{where}: model.patient_latent_dim + model.slow_noise_dim "
            f"({model.patient_latent_dim} + {model.slow_noise_dim}) cannot exceed "
            f"model.latent_dim ({model.latent_dim})"
        )
    if model.slow_noise_memory >= 1:
        raise InputError(
            f"{where}: model.slow_noise_memory must be below 1, got {model.slow_noise_memory}"
        )
    for name, value in positive.items():
        if value <= 0:
            raise InputError(f"{where}: {name} must be positive, got {value}")
    _check_choices(model, where)
    _check_curriculum(training.curriculum, where)


def _check_choices(model, where):
    choices = {
        "latent_distribution": ("uniform", "normal"),
        "static_head": ("pooled", "v1"),
        "discrete_output": ("argmax", "sample", "persistent", "joint"),
        "carry_forward": ("declared", "detect"),
    }
    for name, allowed in choices.items():
        value = getattr(model, name)
        if value not in allowed:
            raise InputError(
                f"{where}: model.{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, "
                f"got '{value}'"
            )


def _check_curriculum(curriculum, where):
    if curriculum is None:
        return
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in curriculum):
        raise InputError(f"{where}: training.curriculum must hold positive integers")
    if list(curriculum) != sorted(set(curriculum)):
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
            base = merged[section]
            if section == "training" and BUDGET & set(values):
                # The budget is the one the extending file names.
                base = {**base, **dict.fromkeys(BUDGET)}
            merged[section] = {**base, **values}
        else:
            merged[section] = values
    return merged


def save_config(config, path):
    """Writes the full, resolved config (no ``extends``) atomically."""
    write_yaml(path, config.to_dict())
