"""``training.evaluation.allocator``: a batch process reuses the memory it freed instead of faulting fresh pages in."""

from __future__ import annotations

import json
import subprocess
import sys

# A fresh interpreter, so the allocator's settings cannot leak into the test session. Page faults are counted,
# not timed: an array made again after one of its size was freed either lands on mapped pages or it does not.
_PROBE = """
import json, resource
import numpy as np
from training.evaluation.allocator import freed_memory_kept

def faults_of_a_fresh_array(megabytes=200):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    array = np.ones(megabytes * 2 ** 20 // 8)  # written through, so every page is touched
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del array
    return faults

faults_of_a_fresh_array()  # the first one faults in either case
default = faults_of_a_fresh_array()
with freed_memory_kept() as took:
    faults_of_a_fresh_array()
    kept = faults_of_a_fresh_array()
restored = [faults_of_a_fresh_array() for _ in range(2)][-1]
print(json.dumps({"took": took, "default": default, "kept": kept, "restored": restored}))
"""


def test_an_array_made_again_lands_on_kept_pages_and_the_defaults_come_back():
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    huge_pages = 200 * 2 ** 20 // 2 ** 21  # the fewest faults 200 MB can take (4 kB pages take 512 times more)
    assert seen["took"], "glibc's mallopt refused the settings"
    assert seen["default"] >= huge_pages // 2  # glibc maps a 200 MB array afresh each time
    assert seen["kept"] <= 5
    assert seen["restored"] >= huge_pages // 2
