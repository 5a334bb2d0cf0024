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
  output (sigmoid numerics in [0, 1], softmax blocks).

Decoded outputs are one `(patients, steps)` tensor per schema variable, named
by :func:`output_name` (``Rel CD4`` -> ``Rel_CD4``): float64 clinical values
for numerics, int32 codes for discrete variables. Nothing is pinned to a
device, so a GPU server samples on its GPU.
"""

import re
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from hg_keras.data.transforms import BOXCOX_EPS
from hg_keras.errors import InputError
from hg_keras.noise import latent_noise
from hg_keras.sampling import CHUNK_PATIENTS, TrainedRun

MODEL_NAME = "hg_keras"


def output_name(variable_name):
    """A signature-safe output key for a column name: ``Comp. INI`` -> ``Comp_INI``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", variable_name).strip("_") or "column"


def decode_in_graph(encoded, transformer):
    """TF ops that turn generator output into clinical values and codes.

    Mirrors :meth:`CohortTransformer.decode` (numerics in float64 so the
    inverse Box-Cox keeps its precision).

    Returns:
        dict output_name -> `(patients, steps)` tensor.
    """
    outputs = {}
    for variable in transformer.schema.variables:
        block = transformer.layout.block(variable.name)
        if variable.is_numeric:
            params = transformer.numeric_params[variable.name]
            y = tf.clip_by_value(tf.cast(encoded[..., block.start], tf.float64), 0.0, 1.0)
            x = y * (params["range"] or 1.0) + params["min"]
            lam = params["lambda"]
            if lam is not None:
                if lam == 0:
                    x = tf.exp(x)
                else:
                    x = tf.pow(tf.maximum(lam * x + 1.0, 1e-12), 1.0 / lam)
                x = x - BOXCOX_EPS
            outputs[output_name(variable.name)] = x
        else:
            codes = tf.constant(variable.codes, tf.int32)
            index = tf.argmax(encoded[..., block.start : block.end], axis=-1, output_type=tf.int32)
            outputs[output_name(variable.name)] = tf.gather(codes, index)
    return outputs


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
    out = Path(out) if out else Path(run_dir) / "serving" / MODEL_NAME
    names = [output_name(v.name) for v in run.schema.variables]
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
    generator, transformer = run.generator, run.transformer
    latent_dim = generator.latent_dim
    distribution = run.config.model.latent_distribution
    noise_spec = tf.TensorSpec((None, None, latent_dim), tf.float32, name="noise")

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
            noise = latent_noise(size, seq_len, latent_dim, seed_pair, distribution)
            decoded = decode_in_graph(generator(noise, training=False), transformer)
            return k + 1, {name: arrays[name].write(k, decoded[name]) for name in arrays}

        arrays = {
            output_name(v.name): tf.TensorArray(
                tf.float64 if v.is_numeric else tf.int32, size=chunks, infer_shape=False
            )
            for v in transformer.schema.variables
        }
        _, arrays = tf.while_loop(lambda k, _: k < chunks, body, (tf.constant(0), arrays))
        return {name: array.concat() for name, array in arrays.items()}

    @tf.function(input_signature=[noise_spec])
    def sample_from_noise(noise):
        return decode_in_graph(generator(noise, training=False), transformer)

    @tf.function(input_signature=[noise_spec])
    def sample_encoded(noise):
        return {"encoded": generator(noise, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint("serving_default", serving_default)
    archive.add_endpoint("sample_from_noise", sample_from_noise)
    archive.add_endpoint("sample_encoded", sample_encoded)
    return archive
