"""Compound variables: discrete columns modelled as one, over the combinations seen.

A regimen is five drug columns in ART for HIV, and only 16 of their
thousands of combinations occur; a missed visit sets ``VL (M)`` and
``CD4 (M)`` together. A generator with one softmax per column, drawn column
by column, pairs drugs that never go together and flags one measurement of
a missed visit but not the other: on the drug columns alone, the
evaluation's classifier scored 0.485 (discriminative score; 0.5 is perfect
separation; issue 13). ``discrete_output: joint`` instead models each group of
time-varying discrete columns of like persistence (regimen-like, renewed
under :data:`PERSISTENT_RENEWAL` per month, or event-like) as one
categorical variable whose levels are the combinations the training
patients hold. Every synthetic month then holds a combination that occurs,
and each column's shares are the compound's, so they are learned directly.

The compound replaces its members in the modelled schema
(:meth:`hg_keras.data.transforms.CohortTransformer.model_schema`); encoding
maps each row to its combination (a combination training never saw, to the
closest one kept: most members equal, then most frequent), decoding maps it
back.
"""

import dataclasses

import numpy as np

from hg_keras.data.schema import Variable

# Renewed less often than this per month: a persistent variable (a regimen),
# as opposed to a month's event (a missed visit).
PERSISTENT_RENEWAL = 0.5
# A group holding more combinations than this is left as separate columns:
# its softmax would be wide and its rare combinations barely trained.
MAX_COMBINATIONS = 256


@dataclasses.dataclass(frozen=True)
class Compound:
    """One modelled variable standing for several discrete columns.

    Args:
        members: tuple of column names, in schema order.
        combinations: tuple of code tuples (members order), most frequent
            first; the compound's code `k` is combination `k`.
    """

    members: tuple
    combinations: tuple

    @property
    def name(self):
        return " + ".join(self.members)

    def variable(self, embedding_size=4):
        """The compound as a categorical :class:`Variable` (codes 0..C-1)."""
        levels = tuple(
            (k, ", ".join(f"{m}={c}" for m, c in zip(self.members, combo)))
            for k, combo in enumerate(self.combinations)
        )
        return Variable(self.name, "categorical", levels=levels, embedding_size=embedding_size)

    def codes_of(self, member):
        """`member`'s code in each of the compound's levels."""
        j = self.members.index(member)
        return [combo[j] for combo in self.combinations]

    def levels_with(self, member, code):
        """Compound codes whose combination holds `code` for `member`."""
        return [k for k, held in enumerate(self.codes_of(member)) if held == code]

    def to_dict(self):
        return {"members": list(self.members), "combinations": [list(c) for c in self.combinations]}

    @classmethod
    def from_dict(cls, data):
        return cls(
            tuple(data["members"]), tuple(tuple(int(c) for c in k) for k in data["combinations"])
        )


def find_compounds(frame, schema, renewal_rates):
    """The compounds of `frame`: its time-varying discrete columns grouped by persistence.

    Args:
        frame: long-format training frame in the modelled schema's columns.
        schema: the modelled :class:`Schema`.
        renewal_rates: dict name -> renewal rate
            (:func:`hg_keras.data.transforms.renewal_rate`).

    Returns:
        list of :class:`Compound`, each of two or more columns with at most
        :data:`MAX_COMBINATIONS` combinations.
    """
    dynamic = [v.name for v in schema.variables if not v.is_numeric and not v.static]
    groups = (
        [n for n in dynamic if renewal_rates.get(n, 1.0) < PERSISTENT_RENEWAL],
        [n for n in dynamic if renewal_rates.get(n, 1.0) >= PERSISTENT_RENEWAL],
    )
    compounds = []
    for members in groups:
        if len(members) < 2:
            continue
        counts = frame[members].dropna().astype(np.int64).value_counts()
        if len(counts) > MAX_COMBINATIONS:
            continue
        combos = tuple(tuple(int(c) for c in key) for key in counts.index)
        compounds.append(Compound(tuple(members), combos))
    return compounds


def owners(compounds):
    """dict member column -> the :class:`Compound` holding it."""
    return {member: c for c in compounds for member in c.members}


def compound_schema(schema, compounds):
    """`schema` with each compound in place of its members (where the first one was)."""
    if not compounds:
        return schema
    owner = owners(compounds)
    variables = []
    for variable in schema.variables:
        compound = owner.get(variable.name)
        if compound is None:
            variables.append(variable)
        elif variable.name == compound.members[0]:
            variables.append(compound.variable())
    return dataclasses.replace(schema, variables=tuple(variables))


def to_compound_frame(frame, compounds):
    """Replaces each compound's member columns by its code column; returns a new frame."""
    if not compounds:
        return frame
    frame = frame.copy()
    for compound in compounds:
        rows = frame[list(compound.members)].to_numpy(dtype=np.float64)
        frame[compound.name] = combination_codes(rows, compound.combinations)
        frame = frame.drop(columns=list(compound.members))
    return frame


def from_compound_frame(frame, compounds, columns):
    """Inverse of :func:`to_compound_frame`: member columns back, in `columns` order."""
    if not compounds:
        return frame
    frame = frame.copy()
    for compound in compounds:
        levels = frame.pop(compound.name).to_numpy().astype(np.int64)
        for member in compound.members:
            frame[member] = np.asarray(compound.codes_of(member), dtype=np.int64)[levels]
    return frame[list(columns)]


def combination_codes(rows, combinations):
    """Index of each row's combination, or of the closest one (most members
    equal, the more frequent on a tie) where the row's is not among them.

    Args:
        rows: float array `(rows, members)` of codes.
        combinations: sequence of code tuples, most frequent first.
    """
    table = np.asarray(combinations, dtype=np.float64)
    codes = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), 65_536):
        part = rows[start : start + 65_536]
        # argmax takes the first maximum: the most frequent of the closest.
        codes[start : start + len(part)] = np.argmax((part[:, None, :] == table).sum(-1), axis=1)
    return codes
