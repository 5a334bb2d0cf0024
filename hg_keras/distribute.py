"""tf.distribute strategies for training: one device, several local devices, several machines.

``mirrored`` is :class:`tf.distribute.MirroredStrategy` over the local GPUs
(or over ``cpu_replicas`` logical CPU devices, so the distributed path runs
on any machine); ``multiworker`` is
:class:`tf.distribute.MultiWorkerMirroredStrategy`, configured by the
standard ``TF_CONFIG`` environment variable. The global batch is the
config's ``batch_size``; each of the ``num_replicas_in_sync`` replicas takes
an equal, consecutive slice of it (see :meth:`WGANGP.train_step` for how the
losses are combined).

Both must be set up before TensorFlow runs its first operation, so the CLI
makes the strategy before anything else.
"""

import os

import tensorflow as tf

from hg_keras.errors import InputError

STRATEGIES = ("default", "mirrored", "multiworker")


def split_cpu(replicas):
    """Splits the first physical CPU into `replicas` logical devices.

    Raises:
        InputError: TensorFlow has already started (devices are fixed then).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    except RuntimeError:
        raise InputError(
            f"cannot split the CPU into {replicas} devices: TensorFlow has already started; "
            "create the strategy before running any TensorFlow operation"
        ) from None


def make_strategy(name="default", cpu_replicas=None):
    """The :class:`tf.distribute.Strategy` called `name`.

    Args:
        name: ``default`` (one device), ``mirrored`` or ``multiworker``.
        cpu_replicas: int, with ``mirrored``: replicate over this many logical
            CPU devices instead of the GPUs.

    Raises:
        InputError: unknown name, `cpu_replicas` with another strategy, or a
            ``multiworker`` request without a usable ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise InputError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if cpu_replicas is not None and name != "mirrored":
        raise InputError("--cpu-replicas splits the CPU for --strategy mirrored only")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if cpu_replicas is None:
            return tf.distribute.MirroredStrategy()
        if cpu_replicas < 1:
            raise InputError(f"--cpu-replicas must be at least 1, got {cpu_replicas}")
        split_cpu(cpu_replicas)
        devices = [f"/cpu:{k}" for k in range(cpu_replicas)]
        # Collective all-reduce between logical CPUs needs no NCCL.
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_tf_config_resolver())


def _tf_config_resolver():
    """TensorFlow's own ``TF_CONFIG`` parser, with a one-line error when it is unusable."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise InputError(
            "--strategy multiworker needs TF_CONFIG (cluster and task of this worker); "
            "see the README's distributed training section"
        )
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        usable = resolver.cluster_spec().as_dict() and resolver.task_type is not None
    except ValueError:  # not JSON (json.JSONDecodeError is a ValueError)
        usable = False
    if not usable or resolver.task_id is None:
        raise InputError(
            'TF_CONFIG: expected JSON {"cluster": {...}, "task": {"type": ..., "index": ...}}, '
            f"got {raw[:80]!r}"
        )
    return resolver


def is_chief(strategy):
    """True for the one process that writes checkpoints, logs and the model.

    That is every single-process strategy, and under ``multiworker`` the
    ``chief`` task or, when the cluster has none, worker 0.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def describe(strategy):
    """One line for the run log: the strategy and its replicas in sync."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "multiworker"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        name = "mirrored"
    elif strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        name = "default"
    else:
        name = type(strategy).__name__
    replicas = strategy.num_replicas_in_sync
    where = ""
    if name != "default":
        where = f" on {', '.join(strategy.extended.worker_devices)}"
    return f"strategy {name}, {replicas} replica(s) in sync{where}"
