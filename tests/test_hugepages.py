"""The trainers and the speed benchmarks start again with glibc's huge-page and heap tunables where they
help (``wordrnn.core.hugepages``), keep the rest of ``GLIBC_TUNABLES``, and stay as they are when told to."""

from __future__ import annotations

import pytest
from conftest import run_python

from wordrnn.core import hugepages

# Prints GLIBC_TUNABLES as the process that finally runs sees it, after asking to start again.
SCRIPT = """
import os, sys
from wordrnn.core.hugepages import exec_with_huge_pages
exec_with_huge_pages()
print("TUNABLES=" + os.environ.get("GLIBC_TUNABLES", "") + " ARGS=" + ",".join(sys.argv[1:]))
"""


def final_environment(**env) -> str:
    result = run_python(SCRIPT, "a b", "--flag", env=env, unset=("GLIBC_TUNABLES", hugepages.OPT_OUT), timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_tunable_is_added_to_what_is_there():
    assert hugepages.with_tunable({})["GLIBC_TUNABLES"] == hugepages.TUNABLE
    joined = hugepages.with_tunable({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"]
    assert joined == f"glibc.malloc.arena_max=2:{hugepages.TUNABLE}"
    assert hugepages.tunable_set({"GLIBC_TUNABLES": joined})
    assert not hugepages.tunable_set({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})


@pytest.mark.skipif(not hugepages.would_help(), reason="needs glibc >= 2.35 and transparent huge pages on madvise")
def test_a_command_starts_again_with_huge_pages_and_its_arguments():
    assert final_environment() == f"TUNABLES={hugepages.TUNABLE} ARGS=a b,--flag"
    kept = final_environment(GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert kept == f"TUNABLES=glibc.malloc.arena_max=2:{hugepages.TUNABLE} ARGS=a b,--flag"


def test_opting_out_leaves_the_process_alone():
    assert final_environment(**{hugepages.OPT_OUT: "0"}) == "TUNABLES= ARGS=a b,--flag"


def test_a_value_other_than_0_or_1_is_refused_in_one_line():
    result = run_python(SCRIPT, env={hugepages.OPT_OUT: "off"}, unset=("GLIBC_TUNABLES",), timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {hugepages.OPT_OUT} must be 0 (no huge pages) or 1 (huge pages where they help), got 'off'"]


# Frees a 256 MB block and allocates and writes one of the same size again, as a training step does with its
# logits; prints the page faults of the second allocation.
REUSE = """
import resource
import numpy as np
from wordrnn.core.hugepages import exec_with_huge_pages
exec_with_huge_pages()
size = 256 << 20
block = np.ones(size, np.uint8)
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = np.ones(size, np.uint8)
print("FAULTS", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not hugepages.would_help(), reason="needs glibc >= 2.35 and transparent huge pages on madvise")
def test_a_large_block_freed_is_reused_without_faulting_its_pages_in_again():
    """What a step's fresh logits cost in the kernel: with the tunable, nothing (the freed block is reused); a block
    mapped afresh faults every page in again (at least 128 with 2 MiB pages, 65,536 with 4 KiB pages)."""
    result = run_python(REUSE, unset=("GLIBC_TUNABLES", hugepages.OPT_OUT), timeout=60)
    assert result.returncode == 0, result.stderr
    faults = int(result.stdout.split("FAULTS")[-1])
    assert faults < 16, faults
