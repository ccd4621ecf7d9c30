"""Training across machines: two real worker processes on loopback under MultiWorkerMirroredStrategy.

Each worker is ``training fit --strategy multi-worker`` in its own process with its own TF_CONFIG and run folder,
as on two machines. A fault drill kills one worker mid-epoch (SIGKILL); the cluster is restarted with the same
commands and must resume from the backup and end with exactly the weights of a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from engine.audio import save_audio
from tests.conftest import synthetic_song
from training.seed.distribute import FAULT_ENV, ClusterInfo, cluster_from_env

pytestmark = pytest.mark.slow

EPOCHS, BACKUP_EVERY, FAULT_AT = 2, 2, 5  # 6 steps an epoch: the fault falls in the first epoch, after a backup


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    for i in range(8):  # 6 train / 2 validation songs, 4 windows each: 6 global batches of 4 per epoch
        save_audio(folder / f"song{i}.flac", synthetic_song(60.0, 1000, channels=1, seed=i))
    return folder


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_cluster(songs, runs, extra_env=None) -> list[subprocess.Popen]:
    """Two workers, each with its own run folder (as on two machines)."""
    ports = free_ports(2)
    workers = []
    for index, run in enumerate(runs):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker",
                                                                                         "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2",
               **(extra_env or {}).get(index, {})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "training", "fit", str(songs), "--run-dir", str(run), "--strategy",
             "multi-worker", "--preset", "compact", "--widths", "8,8,4,4", "--sample-rate", "1000", "--epochs",
             str(EPOCHS), "--files", "0", "--windows-per-song", "4", "--batch-size", "4",
             "--validation-batch-size", "4", "--backup-every", str(BACKUP_EVERY)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return workers


def finish(workers) -> list[str]:
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        outputs.append(out)
    return outputs


def weights(path) -> dict[str, np.ndarray]:
    found = {}

    def take(name, item):  # visititems stops at the first callback that returns anything but None
        if isinstance(item, h5py.Dataset):
            found[name] = item[()]

    with h5py.File(path) as f:
        f.visititems(take)
    assert found
    return found


def worker_weights(runs) -> list[dict[str, np.ndarray]]:
    return [weights(runs[0] / "model.weights.h5"), weights(runs[1] / "worker-1.model.weights.h5")]


def assert_same(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def clean_run(songs, tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    runs = [root / "worker0", root / "worker1"]
    outputs = finish(start_cluster(songs, runs))
    return runs, outputs


def test_two_workers_train_in_step_and_end_with_the_same_weights(clean_run):
    runs, outputs = clean_run
    chief, other = worker_weights(runs)
    assert_same(chief, other)  # synchronous all-reduce: bit for bit
    history = json.loads((runs[0] / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2] and history[-1]["steps"] == 12
    assert json.loads((runs[0] / "config.json").read_text())["strategy"] == {"kind": "multi-worker",
                                                                             "replicas": 2, "workers": 2}
    assert not (runs[1] / "config.json").exists()  # only the chief writes the run
    for out in outputs:
        assert "6 steps of 4 on 2 workers" in out


def test_a_worker_killed_mid_epoch_resumes_from_the_backup_and_loses_nothing(songs, clean_run, tmp_path):
    runs = [tmp_path / "worker0", tmp_path / "worker1"]
    chief, doomed = start_cluster(songs, runs, {1: {FAULT_ENV: str(FAULT_AT)}})
    doomed.communicate(timeout=300)
    assert doomed.returncode == -9  # killed, as a crashed machine
    chief.kill()  # its all-reduce waits for the dead peer: the cluster is restarted, as a job scheduler would
    chief.communicate(timeout=60)
    last_backup = FAULT_AT // BACKUP_EVERY * BACKUP_EVERY
    for run, name in zip(runs, ("worker-0", "worker-1"), strict=True):
        assert (run / "backup" / name / "checkpoint").exists()

    outputs = finish(start_cluster(songs, runs))  # the same commands again
    for out in outputs:
        assert f"resumed from backup at step {last_backup} (epoch 1, batch {last_backup + 1})" in out
    resumed = worker_weights(runs)
    assert_same(resumed[0], resumed[1])
    # Nothing lost, nothing trained twice: the weights of the run that was never interrupted (float noise only).
    assert_same(resumed[0], worker_weights(clean_run[0])[0], atol=1e-6)
    assert [row["epoch"] for row in json.loads((runs[0] / "history.json").read_text())] == [1, 2]


def test_tf_config_is_read_and_its_mistakes_are_one_line():
    env = {"TF_CONFIG": json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                                    "task": {"type": "worker", "index": 0}})}
    info = cluster_from_env(env)
    assert info == ClusterInfo(workers=3, task_type="worker", task_index=0, named_chief=True) and not info.is_chief
    assert cluster_from_env({}).is_chief and cluster_from_env({}).workers == 1
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="TF_CONFIG is not valid"):
        cluster_from_env({"TF_CONFIG": "{not json"})


def test_one_machine_killed_mid_epoch_resumes_from_its_backup(songs, tmp_path):
    """The single-worker path (model.fit with Keras's BackupAndRestore) under the same drill."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "training", "fit", str(songs), "--run-dir", str(run), "--strategy", "default",
               "--preset", "compact", "--widths", "8,8,4,4", "--sample-rate", "1000", "--epochs", "2", "--files", "0",
               "--windows-per-song", "4", "--batch-size", "4", "--validation-batch-size", "4", "--backup-every", "2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.run(command, env={**env, FAULT_ENV: "9"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [1]  # epoch 2 was cut
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]  # epoch 1 was not trained again
    assert (run / "model.weights.h5").exists() and not (run / "backup").exists()
