"""Encoding a cohort into model tensors and decoding it back.

Numerics: Box-Cox with the maximum-likelihood lambda on ``x + eps`` (scipy),
then min-max to [0, 1]; or min-max alone. Discrete columns: one-hot blocks in
the schema's level order. The encoded matrix puts the numeric block first and
then the discrete blocks in schema order, as Health Gym v1 lays them out; the
:class:`FeatureLayout` says which columns belong to which variable.

Everything is fitted on training data only, saved as JSON beside a model and
inverted exactly: [0, 1] values back to clinical units, probability blocks
back to codes by argmax.
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import scipy.special
import scipy.stats

from hg_keras.data.compound import (
    Compound,
    compound_schema,
    find_compounds,
    from_compound_frame,
    owners,
    to_compound_frame,
)
from hg_keras.data.derived import fill_values, from_model_frame, to_model_frame
from hg_keras.data.schema import Schema
from hg_keras.errors import InputError
from hg_keras.files import atomic_write

# Box-Cox needs positive input; v1 shifts every value by this much.
BOXCOX_EPS = 1e-3
# Encoded values lie in [0, 1]; steps after a patient's end hold this value,
# which the networks' Masking layers turn into a mask.
PAD = -1.0


@dataclasses.dataclass(frozen=True)
class Block:
    """Columns ``[start, end)`` of the encoded matrix that hold one variable."""

    name: str
    kind: str
    start: int
    end: int
    static: bool
    embedding_size: int


class FeatureLayout:
    """Which encoded columns hold which variable: numerics first, then discrete blocks.

    Args:
        schema: :class:`Schema`.
        compounds: the :class:`hg_keras.data.compound.Compound` variables of
            `schema`, so that a carrying flag inside one is found.
    """

    def __init__(self, schema, compounds=()):
        numeric = [v for v in schema.variables if v.is_numeric]
        discrete = [v for v in schema.variables if not v.is_numeric]
        blocks, start = [], 0
        for variable in numeric + discrete:
            end = start + variable.width
            blocks.append(
                Block(
                    variable.name,
                    variable.kind,
                    start,
                    end,
                    variable.static,
                    1 if variable.is_numeric else variable.embedding_size,
                )
            )
            start = end
        self.blocks = tuple(blocks)
        self.width = start
        self.numeric_width = len(numeric)
        self.carried = tuple(self._carried(schema, compounds))

    def _carried(self, schema, compounds):
        """`[start, end, *flag columns]` per carried variable (Variable.carried_when):
        its encoded columns and the one-hot columns whose sum is the probability
        that it is carried: the flag's level, or the compound levels holding it."""
        owner = owners(compounds)
        for variable in schema.variables:
            if variable.carried_when:
                flag, code = variable.carried_when
                block = self.block(variable.name)
                if flag in owner:
                    compound = owner[flag]
                    start = self.block(compound.name).start
                    flags = [start + k for k in compound.levels_with(flag, code)]
                else:
                    flags = [self.block(flag).start + schema.variable(flag).codes.index(code)]
                yield [block.start, block.end, *flags]

    @property
    def numeric_blocks(self):
        return tuple(b for b in self.blocks if b.kind == "numeric")

    @property
    def discrete_blocks(self):
        return tuple(b for b in self.blocks if b.kind != "numeric")

    @property
    def dynamic_blocks(self):
        """The discrete blocks of time-varying variables: those with switch rates."""
        return tuple(b for b in self.discrete_blocks if not b.static)

    @property
    def static_columns(self):
        """Encoded column indices of static variables."""
        return tuple(i for b in self.blocks if b.static for i in range(b.start, b.end))

    @property
    def condition_columns(self):
        """Encoded columns of static discrete variables: what a conditional generator is given."""
        return tuple(
            i
            for b in self.blocks
            if b.static and b.kind != "numeric"
            for i in range(b.start, b.end)
        )

    def spec(self):
        """The layout as plain values, for layer configs: width, numeric width,
        discrete blocks as `[start, end, embedding_size]` and static columns."""
        return {
            "width": self.width,
            "numeric_width": self.numeric_width,
            "blocks": [[b.start, b.end, b.embedding_size] for b in self.discrete_blocks],
            "static_columns": list(self.static_columns),
        }

    def block(self, name):
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(name)

    def column_names(self):
        """Encoded column names: ``VL``, ``Gender_0``, ``Gender_1``, ..."""
        names = []
        for block in self.blocks:
            if block.kind == "numeric":
                names.append(block.name)
            else:
                names.extend(f"{block.name}_{k}" for k in range(block.end - block.start))
        return names


def switch_share(frame, column, id_column):
    """Share of a patient's consecutive observed steps where `column` changes level.

    Args:
        frame: long-format frame sorted by patient and time.
        column: a discrete column (codes; missing values are ignored).
        id_column: the patient id column.
    """
    codes = frame[column]
    same = frame[id_column].eq(frame[id_column].shift()) & codes.notna() & codes.shift().notna()
    if not same.any():
        return 0.0
    return float((codes != codes.shift())[same].mean())


def renewal_rate(frame, column, id_column):
    """How often a patient's level draw must be renewed to switch as often as the data.

    With one uniform draw per patient reused every month (``discrete_output:
    persistent``) and renewed with probability `r` per month, a patient whose
    level probabilities are the population's `p` changes level in a share
    ``r * (1 - sum_k p_k^2)`` of months. Solving for the observed switch rate
    `s` gives ``r = s / (1 - sum_k p_k^2)``, clipped to [0, 1]: near 1 for
    month-by-month events such as missed visits (fresh draws), near 0 for
    regimens that persist for years.

    Args:
        frame: long-format frame sorted by patient and time.
        column: a discrete column (codes; missing values are ignored).
        id_column: the patient id column.
    """
    shares = frame[column].value_counts(normalize=True).to_numpy()
    return rate_from_shares(switch_share(frame, column, id_column), shares)


def rate_from_shares(switch, shares):
    """:func:`renewal_rate` from a switch share and level shares: ``switch / (1 -
    sum_k shares_k^2)``, clipped to [0, 1]; 0 for a column of one level."""
    spread = 1.0 - float(np.sum(np.square(shares)))
    return float(np.clip(switch / spread, 0.0, 1.0)) if spread > 0 else 0.0


class CohortTransformer:
    """Fits, applies and inverts the cohort encoding.

    The networks see ``schema.modelled()``: the table's variables plus the
    derived ones (missing-value indicators, time gaps; see
    :mod:`hg_keras.data.derived`), which encode adds and decode removes.

    Args:
        schema: :class:`Schema` of the cohort.
        numeric_params: dict name -> {"lambda", "min", "range"}; set by :meth:`fit`.
        fills: dict name -> last-resort fill of indicator variables; set by :meth:`fit`.
        length_counts: dict length -> patients, the training lengths; set by :meth:`fit`.
        static_groups: list of ``[codes, patients]``, the training patients'
            combinations of static discrete codes (``model_schema.static_discrete``
            order); set by :meth:`fit`.
        integer_time: bool, the training times were integers (irregular time).
        renewal_rates: dict name -> rate in [0, 1] for each time-varying
            discrete variable: how often ``discrete_output: persistent``
            renews a patient's draw (:func:`renewal_rate`); set by :meth:`fit`.
        switch_rates: dict name -> the share of consecutive steps where each
            time-varying discrete variable changes level (:func:`switch_share`):
            what a run's sampler is calibrated to; set by :meth:`fit`.
        compounds: list of :class:`Compound`: discrete columns modelled as
            one variable over their combinations (:mod:`hg_keras.data.compound`);
            set by :meth:`fit` when `joint`.
        joint: bool, :meth:`fit` finds compounds (``discrete_output: joint``).

    Example:
        >>> transformer = CohortTransformer(schema).fit(train_frame)
        >>> x = transformer.encode(train_frame)   # (patients, time, features)
        >>> frame = transformer.decode(x)         # clinical units and codes
    """

    def __init__(
        self,
        schema,
        numeric_params=None,
        fills=None,
        length_counts=None,
        static_groups=None,
        integer_time=True,
        renewal_rates=None,
        compounds=None,
        joint=False,
        switch_rates=None,
    ):
        self.schema = schema
        self.joint = joint
        self._set_compounds([Compound.from_dict(c) for c in compounds or []])
        self.numeric_params = dict(numeric_params or {})
        self.fills = dict(fills or {})
        self.length_counts = {int(k): int(v) for k, v in (length_counts or {}).items()}
        self.static_groups = [[list(map(int, codes)), int(n)] for codes, n in static_groups or []]
        self.integer_time = integer_time
        self.renewal_rates = {str(k): float(v) for k, v in (renewal_rates or {}).items()}
        self.switch_rates = {str(k): float(v) for k, v in (switch_rates or {}).items()}

    def _set_compounds(self, compounds):
        self.compounds = list(compounds)
        self.model_schema = compound_schema(self.schema.modelled(), self.compounds)
        self.layout = FeatureLayout(self.model_schema, self.compounds)

    # Fitting

    def fit(self, frame, private=False):
        """Fits the transforms on `frame` (training patients only).

        With `private` (:mod:`hg_keras.privacy`) nothing is read from the
        data: numeric ranges come from the schema's ``bounds``, a missing
        value's last-resort fill is the middle of the bounds or the first
        code, and no compounds, groups or renewal rates are kept; the
        cohort's one length (a fixed-length design) is the only thing kept.
        """
        lengths = frame.groupby(self.schema.id, sort=False).size()
        self._set_compounds([])
        if private:
            self.fills = public_fills(self.schema)
            self.length_counts = {int(lengths.max()): 1}
            self.integer_time = True
            self.static_groups = []
            self.renewal_rates = {}
            self.switch_rates = {}
            self.numeric_params = {
                v.name: self._numeric_params(v, None)
                for v in self.model_schema.variables
                if v.is_numeric
            }
            return self
        self.fills = fill_values(frame, self.schema)
        self.length_counts = {int(k): int(v) for k, v in lengths.value_counts().items()}
        times = frame[self.schema.time].to_numpy()
        self.integer_time = bool(np.all(np.round(times) == times))
        frame = to_model_frame(frame, self.schema, self.fills)
        if self.joint:
            rates = self._renewal_rates(frame)
            self._set_compounds(find_compounds(frame, self.model_schema, rates))
            frame = to_compound_frame(frame, self.compounds)
        static = [v.name for v in self.model_schema.static_discrete]
        if static:
            first = frame.groupby(self.schema.id, sort=False)[static].first()
            groups = first.astype(np.int64).value_counts(sort=False).sort_index()
            self.static_groups = [[list(map(int, k)), int(n)] for k, n in groups.items()]
        self.renewal_rates = self._renewal_rates(frame)
        self.switch_rates = {
            name: switch_share(frame, name, self.schema.id) for name in self.renewal_rates
        }
        params = {}
        for variable in self.model_schema.variables:
            if not variable.is_numeric:
                continue
            values = frame[variable.name].to_numpy(dtype=np.float64)
            values = values[~np.isnan(values)]
            if values.size == 0:
                raise InputError(f"column '{variable.name}': no observed values to fit")
            params[variable.name] = self._numeric_params(variable, values)
        self.numeric_params = params
        return self

    @staticmethod
    def _numeric_params(variable, values):
        """Box-Cox lambda (fitted on `values`), log flag and the min-max range:
        the declared ``bounds`` transformed when there are some, else the
        transformed training range."""
        lam = None
        if variable.transform == "boxcox":
            lam = _boxcox_lambda(values + BOXCOX_EPS)
        limits = values if variable.bounds is None else np.asarray(variable.bounds)
        if lam is not None:
            limits = scipy.special.boxcox(limits + BOXCOX_EPS, lam)
        elif variable.transform == "log":
            limits = np.log1p(limits)
        low, high = float(np.min(limits)), float(np.max(limits))
        params = {"lambda": lam, "min": low, "range": high - low}
        if variable.transform == "log":
            params["log"] = True
        if variable.bounds is not None:
            params["clip"] = True
        return params

    def _renewal_rates(self, frame):
        return {
            v.name: renewal_rate(frame, v.name, self.schema.id)
            for v in self.model_schema.variables
            if not v.is_numeric and not v.static
        }

    # Encoding

    def encode(self, frame, dtype=np.float32, return_lengths=False):
        """Encodes a sorted long-format frame.

        Args:
            frame: DataFrame as returned by :func:`load_cohort`.
            dtype: output dtype. The networks take float32, which keeps about
                1e-5 relative precision after the inverse Box-Cox of a
                strongly skewed column; float64 inverts to 1e-12.
            return_lengths: bool, also return each patient's number of steps.

        Returns:
            array `(patients, time, features)`, patients shorter than the
            longest padded with :data:`PAD` (``lengths: variable`` schemas);
            with `return_lengths`, also an int array `(patients,)`.
        """
        self._check_fitted()
        counts = frame.groupby(self.schema.id, sort=False).size().to_numpy()
        if counts.size and (counts != counts[0]).any() and not self.schema.variable_length:
            raise InputError(
                "patients have different numbers of time steps "
                f"({counts.min()} to {counts.max()}); set 'lengths: variable' in the schema "
                "to model that"
            )
        frame = to_compound_frame(to_model_frame(frame, self.schema, self.fills), self.compounds)
        steps = int(counts.max()) if counts.size else 0
        flat = np.zeros((len(frame), self.layout.width), dtype=np.float64)
        for block in self.layout.blocks:
            variable = self.model_schema.variable(block.name)
            values = frame[block.name].to_numpy(dtype=np.float64)
            if variable.is_numeric:
                flat[:, block.start] = self.scale(block.name, values)
            else:
                for k, code in enumerate(variable.codes):
                    flat[:, block.start + k] = values == code
        if counts.size and (counts == steps).all():
            encoded = flat.reshape(len(counts), steps, self.layout.width)
        else:
            encoded = np.full((len(counts), steps, self.layout.width), PAD)
            patient = np.repeat(np.arange(len(counts)), counts)
            position = np.arange(len(frame)) - np.repeat(np.cumsum(counts) - counts, counts)
            encoded[patient, position] = flat
        encoded = encoded.astype(dtype)
        return (encoded, counts.astype(np.int64)) if return_lengths else encoded

    def scale(self, name, values):
        """Clinical units -> [0, 1] for one numeric variable (NaN stays NaN)."""
        p = self.numeric_params[name]
        values = np.asarray(values, dtype=np.float64)
        if p["lambda"] is not None:
            values = scipy.special.boxcox(values + BOXCOX_EPS, p["lambda"])
        elif p.get("log"):
            values = np.log1p(values)
        scaled = (values - p["min"]) / (p["range"] or 1.0)
        # Declared bounds are the column's limits: values beyond them are clipped.
        return np.clip(scaled, 0.0, 1.0) if p.get("clip") else scaled

    def unscale(self, name, scaled, xp=np):
        """[0, 1] -> clinical units for one numeric variable; the exact inverse of :meth:`scale`.

        Args:
            xp: the array namespace: NumPy for frames, ``tf.experimental.numpy``
                for the SavedModel's in-graph decoding, so both decode with
                these same lines.
        """
        p = self.numeric_params[name]
        values = xp.asarray(scaled, dtype=xp.float64) * (p["range"] or 1.0) + p["min"]
        if p["lambda"] is not None:
            lam = p["lambda"]
            if lam == 0:
                values = xp.exp(values)
            else:
                # Outside the fitted range lambda*x + 1 can cross zero; v1 clamps it.
                values = xp.power(xp.maximum(lam * values + 1.0, 1e-12), 1.0 / lam)
            values = values - BOXCOX_EPS
        elif p.get("log"):
            values = xp.expm1(values)
        return values

    # Decoding

    def decode(self, encoded, patient_ids=None, first_step=0, lengths=None):
        """Decodes `(patients, time, features)` back to a long-format frame.

        Numerics are clipped to [0, 1] (the fitted range) before inversion;
        each discrete block becomes the code with the largest probability, or
        NaN where the block is all zeros (a missing value in the source).

        Args:
            encoded: array `(patients, time, features)`.
            patient_ids: optional sequence of ids; defaults to 0..patients-1.
            first_step: int, time-step value of the first month (without
                ``irregular_time``; with it, times come from the decoded gaps).
            lengths: optional int array `(patients,)`; steps from a
                patient's length on are dropped.

        Returns:
            DataFrame with the schema's columns, sorted by patient then time.
        """
        self._check_fitted()
        encoded = np.asarray(encoded)
        patients, steps, width = encoded.shape
        if width != self.layout.width:
            raise InputError(f"expected {self.layout.width} encoded features, got {width}")
        flat = encoded.reshape(patients * steps, width)
        columns = {}
        for variable in self.model_schema.variables:
            block = self.layout.block(variable.name)
            if variable.is_numeric:
                column = np.clip(flat[:, block.start].astype(np.float64), 0.0, 1.0)
                columns[variable.name] = self.unscale(variable.name, column)
            else:
                columns[variable.name] = _argmax_codes(
                    flat[:, block.start : block.end], variable.codes
                )
        ids = np.arange(patients) if patient_ids is None else np.asarray(patient_ids)
        columns[self.schema.id] = np.repeat(ids, steps)
        columns[self.schema.time] = np.tile(np.arange(first_step, first_step + steps), patients)
        frame = pd.DataFrame(columns, columns=list(self.model_schema.columns))
        if lengths is not None:
            keep = np.tile(np.arange(steps), patients) < np.repeat(np.asarray(lengths), steps)
            frame = frame[keep].reset_index(drop=True)
        frame = from_compound_frame(frame, self.compounds, self.schema.modelled().columns)
        return from_model_frame(frame, self.schema, self.integer_time)

    # Saving

    def to_dict(self):
        out = {
            "schema": self.schema.to_dict(),
            "numeric_params": self.numeric_params,
            "boxcox_eps": BOXCOX_EPS,
            "length_counts": self.length_counts,
        }
        if self.fills:
            out["fills"] = self.fills
        if self.static_groups:
            out["static_groups"] = self.static_groups
        if self.schema.irregular_time:
            out["integer_time"] = self.integer_time
        if self.renewal_rates:
            out["renewal_rates"] = self.renewal_rates
        if self.switch_rates:
            out["switch_rates"] = self.switch_rates
        if self.compounds:
            out["compounds"] = [c.to_dict() for c in self.compounds]
        return out

    @classmethod
    def from_dict(cls, data):
        return cls(
            Schema.from_dict(data["schema"]),
            data["numeric_params"],
            fills=data.get("fills"),
            length_counts=data.get("length_counts"),
            static_groups=data.get("static_groups"),
            integer_time=data.get("integer_time", True),
            renewal_rates=data.get("renewal_rates"),
            compounds=data.get("compounds"),
            switch_rates=data.get("switch_rates"),
        )

    def save(self, path):
        """Writes the fitted transforms as JSON, atomically."""
        self._check_fitted()

        def write(tmp):
            with open(tmp, "w") as stream:
                json.dump(self.to_dict(), stream, indent=2)

        atomic_write(path, write)

    @classmethod
    def load(cls, path):
        with open(path) as stream:
            return cls.from_dict(json.load(stream))

    def _check_fitted(self):
        missing = [
            v.name
            for v in self.model_schema.variables
            if v.is_numeric and v.name not in self.numeric_params
        ]
        if missing:
            raise ValueError(f"transforms are not fitted for {missing}; call fit() first")


def public_fills(schema):
    """Last-resort fills that read no data: the middle of a numeric's bounds,
    a discrete column's first code."""
    fills = {}
    for variable in schema.variables:
        if variable.missing != "indicator":
            continue
        if variable.is_numeric:
            low, high = variable.bounds
            fills[variable.name] = (low + high) / 2
        else:
            fills[variable.name] = int(variable.codes[0])
    return fills


def _boxcox_lambda(values):
    if np.ptp(values) == 0:
        return 1.0  # A constant column has no MLE; lambda 1 is a plain shift.
    return float(scipy.stats.boxcox(values)[1])


def _argmax_codes(block, codes):
    codes = np.asarray(codes)
    decoded = codes[np.argmax(block, axis=1)]
    empty = block.sum(axis=1) == 0
    if empty.any():
        decoded = decoded.astype(np.float64)
        decoded[empty] = np.nan
    return decoded
