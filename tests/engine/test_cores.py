"""``engine.cores``: "on one core" means every thread of the process, numpy's own included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Run in a fresh interpreter, so that pinning cannot leak into the test session: numpy is imported first, and
# starts its BLAS threads then, as it does in every engine and training process.
_PROBE = """
import json, os, threading
import numpy as np
from engine.cores import pin_process, process_cores
every = sorted(os.sched_getaffinity(0))
threads_at_import = len(os.listdir("/proc/self/task"))
os.sched_setaffinity(0, {every[0]})
calling_thread_only = sorted(process_cores())
pin_process({every[0]})
pinned = sorted(process_cores())
later = []
worker = threading.Thread(target=lambda: later.append(sorted(os.sched_getaffinity(0))))
worker.start(); worker.join()
np.dot(np.ones((256, 256)), np.ones((256, 256)))  # the BLAS threads still work where they are
pin_process(every)
print(json.dumps({"every": every, "threads_at_import": threads_at_import, "calling_thread_only": calling_thread_only,
                  "pinned": pinned, "later": later[0], "restored": sorted(process_cores())}))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning to one of several cores needs several")
def test_pin_process_moves_the_threads_numpy_started_at_import():
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    first = seen["every"][:1]
    if seen["threads_at_import"] > 1:  # numpy's OpenBLAS started threads: pinning the caller alone misses them
        assert seen["calling_thread_only"] == seen["every"]
    assert seen["pinned"] == first and seen["later"] == first
    assert seen["restored"] == seen["every"]
