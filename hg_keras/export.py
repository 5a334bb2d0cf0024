"""Exporting a trained generator as a TF Serving SavedModel that decodes in-graph.

The SavedModel (Keras's ``ExportArchive``) needs only TensorFlow to load:
clients of TF Serving get clinical units and the schema's codes without
hg_keras. Signatures:

* ``serving_default(n, seq_len, seed)``: `n` patients of `seq_len` steps
  from stateless noise keyed by `seed`, generated in chunks: the same
  patients as ``python cli.py sample --seed seed``, for any `n`.
* ``sample_from_noise(noise)``: decoded outputs for explicit noise
  `(patients, steps, latent_dim)`.
* ``sample_encoded(noise)``: the generator's raw `(patients, steps, features)`
  output (sigmoid numerics in [0, 1], softmax blocks), before carried
  values (schema ``carried_when``) are made to follow their flags.

Decoded outputs are one `(patients, steps)` tensor per schema variable, named
by :func:`output_name` (``Rel CD4`` -> ``Rel_CD4``): float64 clinical values
for numerics, int32 codes for discrete variables. Nothing is pinned to a
device, so a GPU server samples on its GPU.

Schemas beyond ART for HIV add: ``length`` (int32 per patient) for
variable-length runs, whose ``serving_default`` draws lengths from the
training lengths, capped at `seq_len` (steps past a patient's length are
padding); the time column (float64, from the modelled gaps) for irregular
times; NaN values (-1 codes) where a ``missing: indicator`` variable was
generated as missing. A conditional run's ``serving_default`` draws static
groups with the training frequencies (``sample --where`` picks them).
"""

import re
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from hg_keras.data.compound import owners
from hg_keras.data.schema import gap_name, indicator_name
from hg_keras.errors import InputError
from hg_keras.layers.carry_forward import CarryForward
from hg_keras.layers.gate_lstm import first_order_only
from hg_keras.run_folder import RunFolder
from hg_keras.sampling import CHUNK_PATIENTS, TrainedRun


def output_name(variable_name):
    """A signature-safe output key for a column name: ``Comp. INI`` -> ``Comp_INI``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", variable_name).strip("_") or "column"


def decode_in_graph(encoded, transformer):
    """TF ops that turn generator output into clinical values and codes.

    Numerics go through :meth:`CohortTransformer.unscale` itself (with
    TensorFlow's NumPy API, in float64 so the inverse Box-Cox keeps its
    precision); codes are the argmax level, as in
    :meth:`CohortTransformer.decode`.

    Returns:
        dict output_name -> `(patients, steps)` tensor.
    """
    outputs = {}
    schema = transformer.schema

    def numeric(name):
        block = transformer.layout.block(name)
        y = tf.clip_by_value(tf.cast(encoded[..., block.start], tf.float64), 0.0, 1.0)
        return tf.convert_to_tensor(transformer.unscale(name, y, xp=tnp))

    modelled = schema.modelled()
    owner = owners(transformer.compounds)

    def codes(name):
        # A column modelled inside a compound reads its code off the compound's level.
        compound = owner.get(name)
        if compound is None:
            block, values = transformer.layout.block(name), modelled.variable(name).codes
        else:
            block, values = transformer.layout.block(compound.name), compound.codes_of(name)
        index = tf.argmax(encoded[..., block.start : block.end], axis=-1, output_type=tf.int32)
        return tf.gather(tf.constant(values, tf.int32), index)

    for variable in schema.variables:
        value = numeric(variable.name) if variable.is_numeric else codes(variable.name)
        if variable.missing == "indicator":
            observed = tf.equal(codes(indicator_name(variable.name)), 1)
            missing = tf.constant(float("nan") if variable.is_numeric else -1, value.dtype)
            value = tf.where(observed, value, missing)
        outputs[output_name(variable.name)] = value
    if schema.irregular_time:
        times = tf.cumsum(numeric(gap_name(schema)), axis=1)
        outputs[output_name(schema.time)] = tf.round(times) if transformer.integer_time else times
    return outputs


def decided(encoded, layout):
    """Each discrete block as the one-hot of its likeliest level: what decoding
    reads, so a carried value follows the decoded flag (a flag inside a
    compound variable spans several levels, whose summed probability can
    disagree with the argmax)."""
    parts, cursor = [], 0
    for block in layout.discrete_blocks:
        index = tf.argmax(encoded[..., block.start : block.end], axis=-1)
        parts.append(encoded[..., cursor : block.start])
        parts.append(tf.one_hot(index, block.end - block.start, dtype=encoded.dtype))
        cursor = block.end
    parts.append(encoded[..., cursor:])
    return tf.concat(parts, axis=-1)


def export_run(run_dir, out=None, version=None, chunk_patients=CHUNK_PATIENTS):
    """Writes the run's generator as a versioned SavedModel for TF Serving.

    Args:
        run_dir: a trained run folder.
        out: the model's base folder (TF Serving's ``model_base_path``);
            default ``<run_dir>/serving/hg_keras``.
        version: int; default one more than the highest version there.
        chunk_patients: int, patients generated at a time by ``serving_default``.

    Returns:
        Path of ``<out>/<version>`` (it holds ``saved_model.pb``).
    """
    run = TrainedRun(run_dir)
    out = Path(out) if out else RunFolder(run_dir).serving_dir
    names = [output_name(v.name) for v in run.schema.variables]
    names += [output_name(run.schema.time)] if run.schema.irregular_time else []
    names += ["length"] if run.schema.variable_length else []
    if len(set(names)) != len(names):
        raise InputError(f"{run_dir}: column names collide as signature outputs: {names}")
    if version is None:
        existing = [int(p.name) for p in out.glob("*") if p.is_dir() and p.name.isdigit()]
        version = max(existing, default=0) + 1
    target = out / str(version)
    if target.exists():
        raise InputError(f"{target}: already exists; TF Serving versions are never overwritten")

    archive = build_archive(run, chunk_patients)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=out))
    try:
        archive.write_out(str(tmp / "model"), verbose=False)
        (tmp / "model").rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_archive(run, chunk_patients=CHUNK_PATIENTS):
    """The ``keras.export.ExportArchive`` with the three signatures.

    ``serving_default`` generates in chunks of `chunk_patients` with noise
    keyed by ``(seed, chunk)``, exactly as ``sample`` does: memory stays
    bounded for large `n` and both give the same patients for any `n`.
    """
    serving_default = _serving_default(run, chunk_patients)
    sample_from_noise, sample_encoded = _noise_signatures(run.generator, run.transformer)
    archive = keras.export.ExportArchive()
    archive.track(run.generator)
    archive.add_endpoint("serving_default", serving_default)
    archive.add_endpoint("sample_from_noise", sample_from_noise)
    archive.add_endpoint("sample_encoded", sample_encoded)
    return archive


def _serving_default(run, chunk_patients):
    """``serving_default(n, seq_len, seed)``: decoded patients, chunk by chunk."""
    transformer = run.transformer
    schema = transformer.schema
    output_types = {
        output_name(v.name): tf.float64 if v.is_numeric else tf.int32 for v in schema.variables
    }
    if schema.irregular_time:
        output_types[output_name(schema.time)] = tf.float64
    if schema.variable_length:
        output_types["length"] = tf.int32
    drawer = run.drawer()

    def draw(size, seq_len, seed_pair):
        """One chunk of decoded patients, drawn by the function ``sample`` draws with."""
        encoded, lengths = drawer(size, seq_len, seed_pair)
        decoded = decode_in_graph(encoded, transformer)
        if schema.variable_length:
            decoded["length"] = lengths
        return decoded

    @tf.function(
        input_signature=[
            tf.TensorSpec((), tf.int32, name="n"),
            tf.TensorSpec((), tf.int32, name="seq_len"),
            tf.TensorSpec((), tf.int32, name="seed"),
        ]
    )
    def serving_default(n, seq_len, seed):
        tf.debugging.assert_positive(n, message="n must be positive")
        tf.debugging.assert_positive(seq_len, message="seq_len must be positive")
        chunks = (n + chunk_patients - 1) // chunk_patients

        def body(k, arrays):
            size = tf.minimum(chunk_patients, n - k * chunk_patients)
            seed_pair = tf.stack([tf.cast(seed, tf.int64), tf.cast(k, tf.int64)])
            decoded = draw(size, seq_len, seed_pair)
            return k + 1, {name: arrays[name].write(k, decoded[name]) for name in arrays}

        arrays = {
            name: tf.TensorArray(dtype, size=chunks, infer_shape=False)
            for name, dtype in output_types.items()
        }
        _, arrays = tf.while_loop(lambda k, _: k < chunks, body, (tf.constant(0), arrays))
        return {name: array.concat() for name, array in arrays.items()}

    return serving_default


def _noise_signatures(generator, transformer):
    """``sample_from_noise`` (decoded) and ``sample_encoded`` for caller-given noise
    (and, for a conditional generator, the condition columns)."""
    noise_spec = tf.TensorSpec((None, None, generator.latent_dim), tf.float32, name="noise")
    # Carried values (schema ``carried_when``) follow the decoded flags, as in ``sample``.
    carry_forward = CarryForward(transformer.layout.carried, hard=True)
    if generator.conditional:
        condition_spec = tf.TensorSpec(
            (None, len(generator.condition_columns)), tf.float32, name="condition"
        )

        @tf.function(input_signature=[noise_spec, condition_spec])
        def sample_from_noise(noise, condition):
            with first_order_only():
                encoded = generator([noise, condition], training=False)
            return decode_in_graph(carry_forward(decided(encoded, transformer.layout)), transformer)

        @tf.function(input_signature=[noise_spec, condition_spec])
        def sample_encoded(noise, condition):
            with first_order_only():
                return {"encoded": generator([noise, condition], training=False)}

    else:

        @tf.function(input_signature=[noise_spec])
        def sample_from_noise(noise):
            with first_order_only():
                encoded = generator(noise, training=False)
            return decode_in_graph(carry_forward(decided(encoded, transformer.layout)), transformer)

        @tf.function(input_signature=[noise_spec])
        def sample_encoded(noise):
            with first_order_only():
                return {"encoded": generator(noise, training=False)}

    return sample_from_noise, sample_encoded
