"""Declarative description of a long-format cohort.

A cohort is a table with one row per patient per time step. The schema names
the patient-id and time-step columns and describes every other column: its
kind (``numeric``, ``binary`` or ``categorical``), the codes and labels of a
discrete column, whether it is a per-patient (static) attribute, and the
transform of a numeric column. Any cohort of that shape is described in YAML,
with no code change::

    id: PatientID
    time: Timestep
    lengths: variable          # patients may have 1 to T steps (default: fixed)
    irregular_time: true       # model the time since the previous visit
    variables:
      - {name: VL, kind: numeric, transform: boxcox}
      - {name: Gender, kind: binary, static: true, levels: {1: Male, 2: Female}}
      - {name: Lactate, kind: numeric, missing: indicator}
"""

import dataclasses

from hg_keras.errors import InputError
from hg_keras.files import check_keys

KINDS = ("numeric", "binary", "categorical")
TRANSFORMS = ("boxcox", "log", "minmax")
MISSING = ("error", "allow", "indicator")
LENGTHS = ("fixed", "variable")

# Health Gym's embedding-size policy for the critic's soft embedding.
DEFAULT_EMBEDDING_SIZE = {"binary": 2, "categorical": 4}


@dataclasses.dataclass(frozen=True)
class Variable:
    """One modelled column.

    Args:
        name: str, the column name in the cohort table.
        kind: str, one of ``numeric``, ``binary``, ``categorical``.
        levels: tuple of (code, label) pairs for discrete kinds, in the
            order of their one-hot columns; empty for numerics.
        static: bool, True for a per-patient attribute (constant over time).
        transform: str, ``boxcox`` (Box-Cox then min-max), ``log``
            (log(x + 1) then min-max, Health Gym sepsis's "LN") or ``minmax``;
            numerics only.
        missing: str, ``error`` (a missing value is an input error),
            ``indicator`` (an observed/missing channel is modelled beside the
            filled value, see :mod:`hg_keras.data.derived`) or ``allow`` (NaN
            passes through the transforms; for evaluation only, not training).
        embedding_size: int, width of the critic's soft embedding of a
            discrete block (Health Gym: 2 for binary, 4 for categorical).
        carried_when: `(flag, code)` or empty: wherever the binary column
            `flag` holds `code`, this variable repeats its previous step
            (a last-observation-carried-forward cohort, such as ART for HIV's
            values under ``VL (M)``). The generator's output obeys the rule
            (:class:`hg_keras.layers.CarryForward`) instead of learning it.
        bounds: `(low, high)` or None, numerics only: public limits of the
            column (a lab's reportable range, a score's scale). Min-max
            scaling then uses them instead of the training range, values
            outside are clipped, and private training needs them.
    """

    name: str
    kind: str
    levels: tuple = ()
    static: bool = False
    transform: str = "boxcox"
    missing: str = "error"
    embedding_size: int = 0
    carried_when: tuple = ()
    bounds: tuple | None = None

    @property
    def is_numeric(self):
        return self.kind == "numeric"

    @property
    def codes(self):
        return tuple(code for code, _ in self.levels)

    @property
    def labels(self):
        return tuple(label for _, label in self.levels)

    @property
    def width(self):
        """Columns this variable takes in the encoded matrix."""
        return 1 if self.is_numeric else len(self.levels)

    def to_dict(self):
        out = {"name": self.name, "kind": self.kind}
        if self.is_numeric:
            out["transform"] = self.transform
            if self.bounds is not None:
                out["bounds"] = list(self.bounds)
        else:
            out["levels"] = {code: label for code, label in self.levels}
            if self.embedding_size != DEFAULT_EMBEDDING_SIZE[self.kind]:
                out["embedding_size"] = self.embedding_size
        if self.static:
            out["static"] = True
        if self.missing != "error":
            out["missing"] = self.missing
        if self.carried_when:
            flag, code = self.carried_when
            out["carried_when"] = {flag: code}
        return out


@dataclasses.dataclass(frozen=True)
class Schema:
    """The columns of a long-format cohort.

    Args:
        id: str, the patient-id column.
        time: str, the time-step column (integers).
        variables: tuple of :class:`Variable`, in table order.
        lengths: str, ``fixed`` (every patient has the same number of steps)
            or ``variable`` (1 to T steps; padded and masked in the networks).
        irregular_time: bool, model the time column as the gap since the
            previous visit instead of assuming consecutive steps.
    """

    id: str
    time: str
    variables: tuple
    lengths: str = "fixed"
    irregular_time: bool = False

    @property
    def variable_length(self):
        return self.lengths == "variable"

    @property
    def derived(self):
        """True when the networks see columns the table lacks (indicators, time gaps)."""
        return self.irregular_time or any(v.missing == "indicator" for v in self.variables)

    def modelled(self):
        """The schema of what the networks see: derived columns added, none missing."""
        if not self.derived:
            return self
        return dataclasses.replace(self, variables=modelled_variables(self), irregular_time=False)

    def without_carry(self):
        """The same columns with no ``carried_when`` rule: what a cohort file
        must match (a rule constrains the generator, not which files fit)."""
        variables = tuple(dataclasses.replace(v, carried_when=()) for v in self.variables)
        return dataclasses.replace(self, variables=variables)

    @property
    def static_discrete(self):
        """Static binary and categorical variables: what conditional sampling fixes."""
        return tuple(v for v in self.variables if v.static and not v.is_numeric)

    @property
    def names(self):
        return tuple(v.name for v in self.variables)

    @property
    def columns(self):
        """Every column of the table, modelled ones first, then id and time."""
        return self.names + (self.id, self.time)

    def variable(self, name):
        for variable in self.variables:
            if variable.name == name:
                return variable
        raise KeyError(name)

    def to_dict(self):
        out = {"id": self.id, "time": self.time}
        if self.lengths != "fixed":
            out["lengths"] = self.lengths
        if self.irregular_time:
            out["irregular_time"] = True
        out["variables"] = [v.to_dict() for v in self.variables]
        return out

    @classmethod
    def from_dict(cls, data, where="schema"):
        """Builds a schema from a parsed YAML mapping, validating every field.

        Raises:
            InputError: naming the offending variable and key.
        """
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a mapping with id, time and variables")
        check_keys(data, {"id", "time", "variables", "lengths", "irregular_time"}, where)
        for key in ("id", "time", "variables"):
            if key not in data:
                raise InputError(f"{where}: missing key '{key}'")
        entries = data["variables"]
        if not isinstance(entries, list) or not entries:
            raise InputError(f"{where}: 'variables' must be a non-empty list")
        variables = tuple(
            _variable_from_dict(entry, f"{where}: variables[{index}]")
            for index, entry in enumerate(entries)
        )
        names = [v.name for v in variables] + [str(data["id"]), str(data["time"])]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"{where}: column '{duplicates[0]}' is listed twice")
        lengths = data.get("lengths", "fixed")
        if lengths not in LENGTHS:
            raise InputError(f"{where}: lengths '{lengths}' is not one of {', '.join(LENGTHS)}")
        irregular = data.get("irregular_time", False)
        if not isinstance(irregular, bool):
            raise InputError(f"{where}: irregular_time must be true or false, got '{irregular}'")
        schema = cls(
            id=str(data["id"]),
            time=str(data["time"]),
            variables=variables,
            lengths=lengths,
            irregular_time=irregular,
        )
        for variable in variables:
            if variable.carried_when:
                _check_carried(schema, variable, where)
        derived = schema.modelled().variables[len(variables) :]
        for variable in derived:
            if variable.name in names:
                raise InputError(
                    f"{where}: column '{variable.name}' clashes with a derived column; rename it"
                )
        return schema


def _check_carried(schema, variable, where):
    """A carried variable is time-varying and its flag a time-varying binary column."""
    flag, code = variable.carried_when
    where = f"{where}: variable '{variable.name}', carried_when"
    if variable.missing == "indicator":
        raise InputError(
            f"{where}: a 'missing: indicator' variable is already carried forward under "
            f"its '{indicator_name(variable.name)}' channel; remove one of the two"
        )
    if variable.static:
        raise InputError(f"{where}: a static variable is never carried from step to step")
    if flag == variable.name or flag not in schema.names:
        raise InputError(f"{where}: '{flag}' is not another variable of the schema")
    flag_variable = schema.variable(flag)
    if flag_variable.kind != "binary" or flag_variable.static:
        raise InputError(f"{where}: '{flag}' must be a time-varying binary variable")
    if code not in flag_variable.codes:
        raise InputError(
            f"{where}: code {code} is not a level of '{flag}' "
            f"(codes: {', '.join(map(str, flag_variable.codes))})"
        )


def _carried_from_entry(entry, where):
    """`carried_when: {flag: code}` as `(flag, code)`; empty when absent."""
    if "carried_when" not in entry:
        return ()
    value = entry["carried_when"]
    if not isinstance(value, dict) or len(value) != 1:
        raise InputError(
            f"{where}: carried_when must be one 'flag column: code' pair, "
            f"such as {{VL (M): 1}}; got {value!r}"
        )
    ((flag, code),) = value.items()
    if isinstance(code, bool) or not isinstance(code, int):
        raise InputError(
            f"{where}: carried_when code for '{flag}' must be an integer, got {code!r}"
        )
    return (str(flag), int(code))


def _bounds_from_entry(entry, transform, where):
    """The `(low, high)` of a numeric's ``bounds``, or None."""
    if "bounds" not in entry:
        return None
    value = entry["bounds"]
    numbers = isinstance(value, list) and len(value) == 2
    numbers = numbers and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )
    if not numbers or not value[0] < value[1]:
        raise InputError(f"{where}: bounds must be [low, high] with low < high, got {value!r}")
    if transform == "log" and value[0] <= -1:
        raise InputError(f"{where}: bounds of a log column must lie above -1, got {value!r}")
    return (float(value[0]), float(value[1]))


def _variable_from_dict(entry, where):
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a mapping with name and kind")
    allowed = {
        "name",
        "kind",
        "levels",
        "static",
        "transform",
        "missing",
        "embedding_size",
        "carried_when",
        "bounds",
    }
    check_keys(entry, allowed, where)
    if "name" not in entry or "kind" not in entry:
        raise InputError(f"{where}: every variable needs 'name' and 'kind'")
    name = str(entry["name"])
    where = f"{where} ('{name}')"
    kind = entry["kind"]
    if kind not in KINDS:
        raise InputError(f"{where}: kind '{kind}' is not one of {', '.join(KINDS)}")
    missing = entry.get("missing", "error")
    if missing not in MISSING:
        raise InputError(f"{where}: missing '{missing}' is not one of {', '.join(MISSING)}")
    static = entry.get("static", False)
    if not isinstance(static, bool):
        raise InputError(f"{where}: static must be true or false, got '{static}'")
    common = dict(
        name=name,
        kind=kind,
        static=static,
        missing=missing,
        carried_when=_carried_from_entry(entry, where),
    )
    if kind == "numeric":
        return _numeric_from_dict(entry, common, where)
    return _discrete_from_dict(entry, common, where)


def _numeric_from_dict(entry, common, where):
    if "levels" in entry:
        raise InputError(f"{where}: a numeric variable takes no 'levels'")
    transform = entry.get("transform", "boxcox")
    if transform not in TRANSFORMS:
        raise InputError(f"{where}: transform '{transform}' is not one of {', '.join(TRANSFORMS)}")
    return Variable(
        **common, transform=transform, bounds=_bounds_from_entry(entry, transform, where)
    )


def _discrete_from_dict(entry, common, where):
    kind = common["kind"]
    for key in ("transform", "bounds"):
        if key in entry:
            raise InputError(f"{where}: a {kind} variable takes no '{key}'")
    levels = entry.get("levels")
    if not isinstance(levels, dict) or not levels:
        raise InputError(f"{where}: a {kind} variable needs 'levels' as a mapping code: label")
    for code in levels:
        # JSON (transforms.json) turns integer keys into strings; accept those.
        if isinstance(code, bool) or not (
            isinstance(code, int) or (isinstance(code, str) and code.lstrip("-").isdigit())
        ):
            raise InputError(f"{where}: level code '{code}' must be an integer")
    if kind == "binary" and len(levels) != 2:
        raise InputError(f"{where}: a binary variable needs exactly 2 levels, got {len(levels)}")
    embedding_size = entry.get("embedding_size", DEFAULT_EMBEDDING_SIZE[kind])
    if (
        isinstance(embedding_size, bool)
        or not isinstance(embedding_size, int)
        or embedding_size < 1
    ):
        raise InputError(
            f"{where}: embedding_size must be a positive integer, got {embedding_size}"
        )
    return Variable(
        **common,
        levels=tuple((int(code), str(label)) for code, label in levels.items()),
        embedding_size=embedding_size,
    )


OBSERVED_LEVELS = ((0, "missing"), (1, "observed"))


def indicator_name(name):
    return f"{name}_observed"


def gap_name(schema):
    return f"{schema.time}_gap"


def modelled_variables(schema):
    """The variables the networks model: the schema's own, then the derived
    columns of :mod:`hg_keras.data.derived` (their names and kinds are the
    schema's; filling and restoring them in frames is ``derived``'s)."""
    variables = []
    for variable in schema.variables:
        if variable.missing == "indicator":
            # Filled forward (then backward, then the median): wherever the
            # channel says missing, the value is the previous step's.
            carried = () if variable.static else (indicator_name(variable.name), 0)
            variables.append(dataclasses.replace(variable, missing="error", carried_when=carried))
        else:
            variables.append(variable)
    for variable in schema.variables:
        if variable.missing == "indicator":
            variables.append(
                Variable(
                    name=indicator_name(variable.name),
                    kind="binary",
                    levels=OBSERVED_LEVELS,
                    static=variable.static,
                    embedding_size=2,
                )
            )
    if schema.irregular_time:
        variables.append(Variable(name=gap_name(schema), kind="numeric", transform="boxcox"))
    return tuple(variables)
