"""Flush denormal floats to zero on every CPU thread PyTorch computes with, while training.

Why: Adam's moment estimates of parameters whose gradient is zero decay geometrically (the
first moment by 0.9 a step), and on their way to zero they spend hundreds of steps as denormal
floats (below 1.2e-38), which x86 CPUs process through a microcode assist, tens of times slower.
On MNIST the encoder's weights from the always-black border pixels get zero gradients, so after
the first epoch about 80 000 of the first layer's moments are denormal and the pytorch-examples
preset trains 30 % slower (2.45 s against 1.70 s per epoch on the 2-core benchmark machine,
benchmarks/RESULTS.md), with the same final numbers to three decimals.

How: the CPU's FTZ/DAZ bits are per thread, and `torch.set_flush_denormal` sets them on the
calling thread only, not on the OpenMP threads that run half of every kernel here. So the setter
is also called from inside an OpenMP parallel region of the libgomp that PyTorch's Linux builds
use, which runs it on every thread of the pool (threads the pool starts later copy the setting
from the thread that starts them). Where no libgomp is loaded (macOS, Windows, builds with
another OpenMP) the main thread alone is set.

Every thread or none: a thread that computes with a different mode from the others makes a
kernel's result depend on which thread ran which share of it. So the libgomp is the one PyTorch's
kernels call (another package may load its own copy), and the setting is checked on every
intra-op thread afterwards; where a thread did not take it, flushing stays off everywhere.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

import torch

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _libgomp() -> ctypes.CDLL | None:
    """The libgomp PyTorch's kernels run their threads with, or None where they use none.

    GOMP_parallel is looked up through libtorch_cpu (dlopen of a loaded library's path returns
    that instance; its symbol lookup searches the libraries it was linked against), so another
    OpenMP runtime in the process, e.g. a package's bundled libgomp-<hash>.so.1, is never taken
    for PyTorch's: setting that one's threads would leave PyTorch's worker threads unset."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if line.rsplit("/", 1)[-1].startswith("libtorch_cpu.")}
        if not paths:
            return None
        lib = ctypes.CDLL(sorted(paths)[0])
        lib.GOMP_parallel.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    except (OSError, AttributeError):  # no libtorch_cpu, or it links no libgomp
        return None
    lib.GOMP_parallel.restype = None
    return lib


def _set_on_every_thread(on: bool) -> bool:
    supported = torch.set_flush_denormal(on)
    lib = _libgomp()
    if supported and lib is not None and torch.get_num_threads() > 1:
        callback = _CALLBACK(lambda _: torch.set_flush_denormal(on))
        # ctypes releases the GIL for the call; each thread takes it to run the callback
        lib.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return supported


def every_thread_flushes() -> bool:
    """Whether every intra-op thread flushes now: a multiply split over all of them (a share of
    2**16 elements each, above the split's grain) turns denormal inputs into zeros everywhere.
    The inputs are made from their bits, which no thread's mode changes."""
    n = torch.get_num_threads() << 16
    tiny = torch.full((n,), 0x00400000, dtype=torch.int32).view(torch.float32)  # 5.9e-39
    return bool(tiny.mul(1.0).eq(0).all())


def set_flush_denormal(on: bool) -> bool:
    """Set flush-to-zero and denormals-are-zero on every intra-op thread, or on none: True where
    every thread now flushes (on=True), False where the CPU cannot or where a thread could not
    be reached, in which case no thread flushes."""
    supported = _set_on_every_thread(on)
    if on and supported and not every_thread_flushes():
        _set_on_every_thread(False)  # a mixed mode would make results depend on the threads
        return False
    return supported


def flushing_denormals() -> bool:
    """Whether the calling thread flushes denormals now: a denormal times one gives zero."""
    return bool(torch.tensor([1e-39]).mul(1.0).item() == 0.0)


@contextmanager
def flush_denormals():
    """Flush denormals to zero on all threads inside the block; restore the previous setting
    after it, so a program that uses vaelab as a library keeps its own floating-point mode."""
    before = flushing_denormals()
    set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            set_flush_denormal(False)
