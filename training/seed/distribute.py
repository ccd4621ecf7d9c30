"""Training under tf.distribute: one device, several devices, several machines, or a TPU.

``training fit --strategy auto`` picks the strategy from what it finds: ``TF_CONFIG`` naming two or more workers
gives ``MultiWorkerMirroredStrategy`` (synchronous data parallelism across machines), a TPU gives ``TPUStrategy``,
two or more GPUs give ``MirroredStrategy``, anything else the default strategy (one device). The model code does
not change: it is built and compiled inside ``strategy.scope()``.

Keras 3's ``model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585: per-replica
values reach its train step), so multi-worker training runs this module's loop instead: the same model, MSE and
Adam, one ``strategy.run`` per step over a distributed dataset, with the gradients all-reduced across workers.
Its fault tolerance is that of Keras's ``BackupAndRestore`` and a little more: every ``backup_every`` steps (and
at every epoch's end) each worker checkpoints weights, optimizer state and the global step into its own backup
folder; a restarted cluster restores them and skips the batches of the interrupted epoch it had already trained
(each epoch's order is a function of the seed and the epoch), so no step is lost or repeated. Single-worker
strategies keep ``model.fit`` with ``keras.callbacks.BackupAndRestore``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ConfigError

from ..common.runs import read_history

STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")
#: Fault drills: a worker whose environment sets this kills itself (SIGKILL) right after that global step.
FAULT_ENV = "ENCORE_FAULT_AT_STEP"


@dataclass(frozen=True)
class ClusterInfo:
    """This process's place in the cluster that ``TF_CONFIG`` describes (one worker without it)."""

    workers: int
    task_type: str
    task_index: int
    named_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """The worker that writes the run folder: ``chief``, or worker 0 when no chief is named."""
        return self.task_type == "chief" or (not self.named_chief and self.task_type == "worker"
                                             and self.task_index == 0)

    @property
    def name(self) -> str:
        return f"{self.task_type}-{self.task_index}"


def cluster_from_env(environ=None) -> ClusterInfo:
    """Read ``TF_CONFIG`` (see the README for an example).

    Raises
    ------
    ConfigError
        ``TF_CONFIG`` is set but is not the JSON TensorFlow expects.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw.strip():
        return ClusterInfo(workers=1, task_type="worker", task_index=0)
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        info = ClusterInfo(workers=workers, task_type=str(task.get("type", "worker")),
                           task_index=int(task.get("index", 0)), named_chief="chief" in cluster)
    except (ValueError, AttributeError, TypeError) as e:
        raise ConfigError(f"TF_CONFIG is not valid: {e} (expected {{\"cluster\": {{\"worker\": [...]}}, "
                          f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}})") from e
    if workers == 0:
        raise ConfigError("TF_CONFIG names no workers in its cluster")
    return info


def make_strategy(kind: str = "auto"):
    """Create the tf.distribute strategy; call it before any other TensorFlow work in the process.

    Returns
    -------
    strategy : tf.distribute.Strategy
    kind : str
        The one chosen (``auto`` resolved).
    cluster : ClusterInfo

    Raises
    ------
    ConfigError
        An unknown kind, ``multi-worker`` without a cluster, ``tpu`` without a TPU.
    """
    import tensorflow as tf

    if kind not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {kind!r}")
    cluster = cluster_from_env()
    if kind == "auto":
        if cluster.workers > 1:
            kind = "multi-worker"
        elif _tpu_present():
            kind = "tpu"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi-worker":
        if cluster.workers < 2:
            raise ConfigError("--strategy multi-worker needs TF_CONFIG naming two or more workers (see the README)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif kind == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise ConfigError(f"--strategy tpu: no TPU answers here ({e})") from e
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        strategy = tf.distribute.get_strategy()
    return strategy, kind, cluster


def _tpu_present() -> bool:
    """Only look for a TPU where one is announced: the resolver would otherwise ask a metadata server."""
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or Path("/dev/accel0").exists())


def backup_dir(run_dir: Path, cluster: ClusterInfo) -> Path:
    """Each worker's own backup folder (on one machine or many, they never write the same file)."""
    return Path(run_dir) / "backup" / cluster.name


def train_multi_worker(strategy, cluster: ClusterInfo, build, make_train, make_validation, *, run_dir: Path,
                       epochs: int, batch_size: int, learning_rate: float, patience: int, backup_every: int,
                       seed: int, history_path: Path | None, weights_path: Path, log=print) -> dict:
    """The multi-worker training loop (see the module docstring).

    Parameters
    ----------
    build : callable
        ``build()`` returns the uncompiled Keras model; called inside the strategy's scope.
    make_train : callable
        ``make_train(seed)`` returns the training ``tf.data.Dataset`` of (context, continuation) batches, its
        order a function of ``seed`` alone.
    make_validation : callable
        ``make_validation()`` returns the validation dataset.
    batch_size : int
        The global batch, split across the workers.
    backup_every : int
        Steps between checkpoints (0: only at each epoch's end).
    weights_path : Path
        Where this worker writes its best weights on validation.

    Returns
    -------
    dict
        ``resumed_from_step``, ``steps``, ``best_val_loss``.
    """
    import keras
    import tensorflow as tf

    with strategy.scope():
        model = build()
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    # Every variable by position, not the model's object graph: tf.train.Checkpoint does not follow the layers
    # that Keras 3 keeps in lists, and would silently leave BatchNormalization's moving statistics out.
    checkpoint = tf.train.Checkpoint(model_variables=list(model.weights), optimizer_variables=list(optimizer.variables),
                                     step=step)
    backups = tf.train.CheckpointManager(checkpoint, str(backup_dir(run_dir, cluster)), max_to_keep=2)
    resumed_from = 0
    if backups.latest_checkpoint:
        checkpoint.restore(backups.latest_checkpoint).assert_existing_objects_matched()
        resumed_from = int(step.numpy())

    def global_batches(epoch: int):
        # Rebatched with drop_remainder: every worker must run the same number of steps, or the all-reduce hangs.
        return make_train(seed + epoch).unbatch().batch(batch_size, drop_remainder=True)

    def worker_batches(epoch: int, skip: int):
        """This worker's slice of every global batch from ``skip`` on: the split is explicit, not left to
        tf.distribute's automatic sharding, so a resumed epoch sees exactly the examples it would have."""

        def for_worker(context):
            per_replica = context.get_per_replica_batch_size(batch_size)
            first = context.input_pipeline_id * per_replica
            return global_batches(epoch).skip(skip).map(
                lambda x, y: (x[first:first + per_replica], y[first:first + per_replica]))

        return strategy.distribute_datasets_from_function(for_worker)

    steps_per_epoch = int(global_batches(0).reduce(np.int64(0), lambda n, _: n + 1).numpy())
    if steps_per_epoch == 0:
        raise ConfigError(f"fewer training examples than one global batch of {batch_size}")

    @tf.function
    def train_step(iterator):
        def replica_step(batch):
            context, continuation = batch
            with tf.GradientTape() as tape:
                predicted = model(context, training=True)
                per_example = tf.reduce_mean(tf.square(predicted - continuation), axis=[1, 2])
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=batch_size)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        losses = strategy.run(replica_step, args=(next(iterator),))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    fault_at = int(os.environ.get(FAULT_ENV, "0") or 0)
    history = read_history(history_path) if resumed_from else []
    best = min((row["val_loss"] for row in history), default=math.inf)
    stale = 0
    first_epoch, skip = divmod(resumed_from, steps_per_epoch)
    if resumed_from:
        log(f"resumed from backup at step {resumed_from} (epoch {first_epoch + 1}, batch {skip + 1})")
    started = time.time()
    for epoch in range(first_epoch, epochs):
        iterator = iter(worker_batches(epoch, skip if epoch == first_epoch else 0))
        losses = []
        for _ in range(skip if epoch == first_epoch else 0, steps_per_epoch):
            losses.append(float(train_step(iterator)))
            step.assign_add(1)
            done = int(step.numpy())
            if fault_at and done == fault_at:
                os.kill(os.getpid(), signal.SIGKILL)  # a fault drill: die as a crashed machine would
            if backup_every and done % backup_every == 0:
                backups.save(checkpoint_number=done)
        val_loss = _validation_loss(model, make_validation())
        row = {"epoch": epoch + 1, "seconds": round(time.time() - started, 1), "loss": float(np.mean(losses)),
               "val_loss": val_loss, "steps": int(step.numpy())}
        history.append(row)
        log(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.6f}, val_loss {val_loss:.6f} "
            f"({steps_per_epoch} steps of {batch_size} on {cluster.workers} workers)")
        if history_path is not None:
            history_path.write_text(json.dumps(history, indent=1))
        if val_loss < best:
            best, stale = val_loss, 0
            model.save_weights(str(weights_path))
        else:
            stale += 1
        backups.save(checkpoint_number=int(step.numpy()))
        if not math.isfinite(row["loss"]) or (patience and stale >= patience):
            break  # the same decision on every worker: they all see the same losses
    if not weights_path.exists():
        model.save_weights(str(weights_path))
    for path in Path(backups.directory).glob("*"):  # finished: the backup has done its job
        path.unlink()
    remove_empty_backup(run_dir, cluster)
    return {"resumed_from_step": resumed_from, "steps": int(step.numpy()), "best_val_loss": best}


def remove_empty_backup(run_dir: Path, cluster: ClusterInfo) -> None:
    """Remove the backup folders a finished run leaves empty (a folder with a backup means: resume me)."""
    folder = backup_dir(run_dir, cluster)
    for empty in (folder, folder.parent):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()


def fault_drill_callback():
    """For ``model.fit``: the same fault drill (:data:`FAULT_ENV`), counted in optimizer steps; None when unset."""
    import keras

    fault_at = int(os.environ.get(FAULT_ENV, "0") or 0)
    if not fault_at:
        return None

    class FaultDrill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) >= fault_at:
                os.kill(os.getpid(), signal.SIGKILL)

    return FaultDrill()


def _validation_loss(model, dataset) -> float:
    """Mean squared error over the whole validation set, on this worker (all workers hold the same weights)."""
    total, count = 0.0, 0
    for context, continuation in dataset:
        predicted = model(context, training=False)
        errors = np.mean(np.square(np.asarray(predicted) - continuation.numpy()), axis=(1, 2))
        total, count = total + float(errors.sum()), count + errors.shape[0]
    return total / count if count else math.nan
