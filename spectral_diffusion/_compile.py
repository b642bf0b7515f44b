"""How the library compiles, batches and runs the programs it jits itself (the train
step, the Reproduce suite's sampler) on CPU, chosen from profiles of the cpu preset (see
the Benchmarks page): compiler options, the `filter_jit` that applies them, the split
of a training batch into independent groups (the whole per-example loss, or only the
network's `grouped` sections), the Reproduce sampler's batch slices run
on host threads, and the host allocator's settings."""

import contextlib
import contextvars
import ctypes
import ctypes.util
import functools
import os
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap


_YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
_REDUCE, _CONV, _DOT = (
    f"LIBRARY_FUSION_TYPE_{kind}" for kind in ("REDUCE", "INDIVIDUAL_CONVOLUTION", "INDIVIDUAL_DOT")
)
# Which kernels of the library's own CPU programs go to YNNPACK (XLA:CPU's default library
# for dots, reductions and convolutions), the rest to XLA's own kernels (Eigen), chosen
# by interleaved A/B runs (the Benchmarks page):
# - reductions always: XLA's own are much slower on these shapes (a sum over
#   32x32x32x64 to 64 channels: 13.7 ms against 0.38 ms).
# - The train step: Eigen's convolutions and dots. YNNPACK's convolution backward pass is
#   slower on most shapes (96 -> 32 channels at 64 px, batch 8, forward + VJP: 66.7
#   against 34.9 ms on 1 core), the step at 128 px, batch 8, 11% slower with them
#   (1578 against 1424 ms on 2 cores); the cpu preset's step gained 0-3% at most. Its
#   dots are 2-3% faster in Eigen on 1 core.
# - The Reproduce sampler, a forward pass on slices of 8 examples: YNNPACK's
#   convolutions and dots. The sampler at 32 px, batch 32, took 1996 -> 1886 -> 1846 ms
#   on 1 core (convolutions, then dots too) and 1076 -> 1013 -> 971 ms on 2; at 64 px
#   9449 -> 9300 and 4877 -> 4703 ms.
# Elementwise fusions stay XLA's: YNNPACK's made the step 28% slower.
_CPU_OPTIONS = {
    "train": {_YNN_OPTION: _REDUCE},
    "sample": {_YNN_OPTION: f"{_REDUCE},{_CONV},{_DOT}"},
}


@functools.cache
def compiler_options(program: str = "train") -> dict[str, str] | None:
    """Options for `jax.jit(..., compiler_options=...)` of the library's `program`
    (`"train"`: the train step; `"sample"`: the Reproduce suite's sampler): on CPU,
    which kernels YNNPACK computes and which XLA's own. `None` on accelerators, where
    the user's `XLA_FLAGS` already set the option, or where this jaxlib does not know
    it (older versions)."""
    if program not in _CPU_OPTIONS:
        raise ValueError(f"`program` must be one of {sorted(_CPU_OPTIONS)}, got {program!r}.")
    options = _CPU_OPTIONS[program]
    if jax.default_backend() != "cpu" or _YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(jnp.zeros(())).compile()
    except Exception:  # an unknown option or value: keep XLA's defaults
        return None
    return dict(options)


class filter_jit:
    """`equinox.filter_jit(fn)` for the programs the library runs once per step or per
    batch: arrays are traced and every other leaf held static, as there, but a call
    from Python goes through `jax.jit` on the flat list of arrays, compiled with
    [`compiler_options`][] for `program` (`"train"` or `"sample"`). `equinox.filter_jit`
    partitions and recombines the whole pytree in Python on every call and waits for
    the program to finish (to report `equinox.error_if` failures): 12 ms of host time a
    call for the cpu preset's train state, spent while the cores waited. Here a call
    flattens the arguments once and returns when JAX's call does: at once for a program
    without host callbacks, at its end for one with them, such as the train step with
    its `equinox.error_if` input checks (JAX runs those synchronously on CPU). A failed
    check is raised as `equinox.EquinoxRuntimeError` with the check's message, as
    `equinox.filter_jit` raises it. A call from inside a user's `jit` (traced
    arguments), or with static leaves that cannot be hashed, takes `equinox.filter_jit`
    (compiler options apply only at the top level).
    """

    def __init__(self, fn: Callable, program: str = "train"):
        self.fn = fn
        self.plain = eqx.filter_jit(fn)
        options = compiler_options(program)
        self.top = self.plain if options is None else eqx.filter_jit(fn, compiler_options=options)
        self._options = options
        self._programs: dict = {}

    def __call__(self, *args):
        leaves, treedef = jax.tree.flatten(args)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return self.plain(*args)
        dynamic = tuple(eqx.is_array(leaf) for leaf in leaves)
        static = tuple(leaf for leaf, d in zip(leaves, dynamic) if not d)
        arrays = [leaf for leaf, d in zip(leaves, dynamic) if d]
        # The output's structure is read when the program is traced, so the key holds
        # everything a trace depends on: structure, static leaves, shapes and dtypes.
        signature = tuple((a.shape, a.dtype, getattr(a, "weak_type", False)) for a in arrays)
        key = (treedef, dynamic, static, signature)
        try:
            program = self._programs.get(key)
        except TypeError:  # a static leaf that cannot be hashed
            return self.top(*args)
        if program is None:  # threads calling at once share one program (`in_threads`),
            # and `jax.jit` traces and compiles it once for them
            program = self._programs.setdefault(
                key, _FlatProgram(self.fn, treedef, dynamic, static, self._options)
            )
        try:
            return program(arrays)
        except (jax.errors.JaxRuntimeError, ValueError) as error:
            # A failed `equinox.error_if` check: its message, as `equinox.filter_jit`
            # reports it, instead of the callback's traceback around it.
            text = str(error)
            if _EQX_ERROR not in text:
                raise
            message = text.split(_EQX_ERROR, 1)[1].split("\n\n\n", 1)[0]
            raise eqx.EquinoxRuntimeError(message) from None


_EQX_ERROR = "_EquinoxRuntimeError: "


class _FlatProgram:
    """`fn` on one pytree structure, jitted as a function of its array leaves only."""

    def __init__(self, fn: Callable, treedef, dynamic: tuple, static: tuple, options):
        self.output = None  # (treedef, which leaves are arrays, the static leaves)

        def flat(*arrays):
            fill, held = iter(arrays), iter(static)
            leaves = [next(fill) if d else next(held) for d in dynamic]
            out_leaves, out_tree = jax.tree.flatten(fn(*jax.tree.unflatten(treedef, leaves)))
            is_array = tuple(eqx.is_array(leaf) for leaf in out_leaves)
            held_out = [leaf for leaf, a in zip(out_leaves, is_array) if not a]
            self.output = (out_tree, is_array, held_out)
            return [leaf for leaf, a in zip(out_leaves, is_array) if a]

        self.jitted = jax.jit(flat, compiler_options=options)

    def __call__(self, arrays: list):
        computed = iter(self.jitted(*arrays))
        out_tree, is_array, held = self.output
        held = iter(held)
        return jax.tree.unflatten(out_tree, [next(computed) if a else next(held) for a in is_array])


def batch_groups(batch: int) -> int:
    """How many independent slices the train step computes a batch of `batch` examples
    in: on one CPU device, the most of 4 or 2 that divides the batch into slices of at
    least 8 examples (measured on the cpu preset, batch 32: 4 groups took the step from
    268 to 232 ms on 2 cores and from 426 to 399 ms on 1; 8 groups were slower again);
    1 on accelerators and over several devices (slices would cut across the batch
    sharding)."""
    return _slice_count(batch, (4, 2))


def in_groups(fn: Callable, args: tuple, axes: tuple, groups: int):
    """`fn(*args)` for `fn` mapped over axis 0 of the arguments whose entry in `axes` is
    0 (`None`: shared), computed as `groups` independent slices of the batch and
    concatenated. The same values; XLA:CPU runs the independent slices' kernels side
    by side, where one batch-wide kernel after another kept the cores half busy."""
    if groups <= 1:
        return fn(*args)
    return jnp.concatenate([fn(*part) for part in _slices(args, axes, groups, "groups")])


# `(groups, batch)` while `network_groups` is in force (during tracing).
_NETWORK_GROUPS: contextvars.ContextVar = contextvars.ContextVar(
    "spectral_diffusion_network_groups", default=(1, 0)
)


@contextlib.contextmanager
def network_groups(groups: int, batch: int):
    """While code is traced inside this context, every [`grouped`][] section mapped
    with `jax.vmap` over a batch of `batch` examples is computed as `groups`
    independent slices of it ([`in_groups`][]); the rest of the program keeps the
    whole batch. `batch_loss` sets it for networks that mark such sections."""
    token = _NETWORK_GROUPS.set((groups, batch))
    try:
        yield
    finally:
        _NETWORK_GROUPS.reset(token)


def grouped(fn: Callable, *args):
    """`fn(*args)` for one example, marked as a section that a surrounding
    [`network_groups`][] computes in independent slices of the batch when it is mapped
    with `jax.vmap` (the same values). `fn` must take every traced array it uses as an
    argument; `args` may hold modules (their arrays are what is mapped).

    Why a section and not the whole network: on CPU the cpu preset's U-ViT trains
    faster with its transformer in groups of 8 and its convolutions on the whole batch
    (the train step 269.2 -> 258.5 ms on 1 core, 164.8 -> 162.6 ms on 2, against the
    whole per-example loss in groups; see the Benchmarks page): XLA's convolutions run
    10-22% faster on a batch of 32 than on four of 8 on one core, while the
    transformer's matmuls and their elementwise chains gain from the smaller slices.

    Outside `network_groups`, or with one group, this is `fn(*args)`: nothing else
    changes, so `jax.vmap(jax.grad(...))` of a network and every other composition
    work as before. Inside it, the section is a `jax.custom_batching.custom_vmap`,
    which supports reverse-mode differentiation only from outside the `vmap` (as
    `jax.grad` of `batch_loss` does)."""
    groups, batch = _NETWORK_GROUPS.get()
    if groups <= 1:
        return fn(*args)
    arrays, static = eqx.partition(args, eqx.is_array)

    def call(*arrays):
        return fn(*eqx.combine(arrays, static))

    section = custom_vmap(call)

    @section.def_vmap
    def rule(axis_size: int, in_batched: list, *arrays):
        batched = [any(jax.tree.leaves(b)) for b in in_batched]
        # An argument batched in some leaves only: its other leaves broadcast.
        arrays = tuple(
            jax.tree.map(
                lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x))), a, bs
            )
            if any_batched
            else a
            for a, bs, any_batched in zip(arrays, in_batched, batched)
        )
        axes = tuple(0 if b else None for b in batched)
        mapped = jax.vmap(call, in_axes=axes)
        out = mapped(*arrays) if axis_size != batch else in_groups(mapped, arrays, axes, groups)
        return out, jax.tree.map(lambda _: True, out)

    return section(*arrays)


def host_threads(batch: int) -> int:
    """How many programs `in_threads` runs side by side for a batch of `batch`
    examples: on one CPU device, the most slices of at least 8 examples that divide the
    batch, up to the cores this process may use; 1 on accelerators and over several
    devices (where the batch is split over the devices instead)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return _slice_count(batch, range(cores or 1, 1, -1))


def host_slices(batch: int) -> tuple[int, int]:
    """`(slices, threads)` for `in_threads` on a batch of `batch` examples: `threads`
    from [`host_threads`][], and the batch cut into the most slices of at least 8
    examples that divide it evenly among the threads, each thread running its share in
    turn. The Reproduce sampler (DDIM, NFE 32, batch 32, its compiler options) on one
    core took 1835 ms in one program, 1778 ms in two slices and 1774 ms in four, one
    after another (another process: 1873, 1860 and 1899 ms; slices are no loss), and on
    two cores 959 ms in two slices and 958 ms in four, against 1501 ms for one program
    (see the Benchmarks page). `(1, 1)` on accelerators and over several devices."""
    threads = host_threads(batch)
    counts = [n for n in range(batch // 8, 0, -1) if n % threads == 0]
    return _slice_count(batch, counts), threads


def _slice_count(batch: int, counts) -> int:
    """The first of `counts` that cuts `batch` into equal slices of at least 8
    examples, on one CPU device; 1 otherwise, and on accelerators and over several
    devices (slices would cut across the batch sharding)."""
    if jax.default_backend() != "cpu" or jax.device_count() > 1:
        return 1
    return next((n for n in counts if batch % n == 0 and batch // n >= 8), 1)


def in_threads(fn: Callable, args: tuple, axes: tuple, threads: int, slices: int | None = None):
    """`fn(*args)` for a jitted `fn` that maps over axis 0 of the arguments whose entry
    in `axes` is 0 (`None`: shared), called on `slices` (default: `threads`) equal
    slices of the batch, `threads` host threads each calling it on an equal share of
    them in turn, and concatenated: the same values as one call. On CPU, two programs
    running side by side keep two cores busier than one program's kernels split across
    them: the Reproduce sampler (DDIM, NFE 32, batch 32) took 1336 -> 1082 ms on 2
    cores in two halves (see the Benchmarks page); smaller slices also ran faster on
    one core ([`host_slices`][]). Not for programs whose temporaries exceed 64 MiB: a
    worker thread's glibc heap cannot keep blocks that large, so they are fresh pages
    on every call (`keep_host_memory`)."""
    slices = threads if slices is None else slices
    if slices % max(threads, 1):
        raise ValueError(f"`slices` {slices} must be a multiple of `threads` {threads}.")
    if slices <= 1:
        return fn(*args)
    parts = _slices(args, axes, slices, "slices" if slices != threads else "threads")
    if threads <= 1:
        return jnp.concatenate([fn(*part) for part in parts])
    share = slices // threads

    def run(first: int) -> list:
        return [fn(*part) for part in parts[first : first + share]]

    pool = _thread_pool(threads)
    futures = [pool.submit(run, first) for first in range(0, slices, share)]
    return jnp.concatenate([out for future in futures for out in future.result()])


@functools.cache
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="spectral_diffusion")


def _slices(args: tuple, axes: tuple, parts: int, name: str) -> list[list]:
    """`args` cut into `parts` equal slices along axis 0 where `axes` says 0."""
    batch = next(jax.tree.leaves(a)[0].shape[0] for a, axis in zip(args, axes) if axis == 0)
    if batch % parts:
        raise ValueError(f"`{name}` {parts} must divide the batch size {batch}.")
    size = batch // parts
    return [
        [
            a if axis is None else jax.tree.map(lambda v: v[p * size : (p + 1) * size], a)
            for a, axis in zip(args, axes)
        ]
        for p in range(parts)
    ]


# glibc's `mallopt` parameters (<malloc.h>) and the environment variables that set them.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_MALLOC_ENVIRONMENT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


@functools.cache
def keep_host_memory() -> bool:
    """Have glibc's `malloc` keep the memory a program frees for its next allocation,
    so that XLA:CPU's programs run on pages the process already holds.
    [`spectral_diffusion.train.train`][] calls it on the CPU backend; call it yourself
    before a CPU training loop of your own built from
    [`spectral_diffusion.train.make_train_step`][].

    XLA:CPU allocates each execution's temporary buffers afresh (the cpu preset's train
    step: about 190 MiB), and glibc serves blocks that large with `mmap` and unmaps them
    when they are freed. So every step wrote to tens of thousands of new pages, each a
    page fault the kernel first fills with zeros: 48,000 faults a step, and the step
    took 188 ms instead of 149 ms on 2 cores (see the Benchmarks page). This turns off
    `mmap` for large blocks (`M_MMAP_MAX = 0`) and returning freed memory to the system
    (`M_TRIM_THRESHOLD = -1`), so each step reuses the pages the previous one freed.

    The cost is memory: it applies to the whole process, cannot be undone, and memory
    freed later stays with the process (the cpu preset's training process holds 2,183
    MiB instead of 1,763 MiB, steady over the run). No result changes. Blocks over 64
    MiB that XLA allocates from its worker threads still get fresh pages: glibc's
    per-thread heaps are at most 64 MiB and it maps larger blocks for them whatever
    `M_MMAP_MAX` says. `MALLOC_ARENA_MAX=1` in the environment would cover them, but
    one arena for all threads made the cpu preset's step slower (235 ms), so it is not
    set here. The train step runs on the calling thread, whose heap has no such limit,
    because JAX runs programs with host callbacks (its `equinox.error_if` checks)
    synchronously; other programs with such blocks can run there too with
    `jax.config.update("jax_cpu_enable_async_dispatch", False)` before JAX's first
    computation (measured on the Benchmarks page: it helps some programs and slows
    others, so it is left to the user).

    **Returns:**

    Whether the settings were applied: `False` where the C library is not glibc
    (macOS, musl), where the environment already sets them (`MALLOC_MMAP_MAX_`,
    `MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_` or glibc's malloc tunables in
    `GLIBC_TUNABLES`), or where `mallopt` refused.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _MALLOC_ENVIRONMENT) or "glibc.malloc" in (
        os.environ.get("GLIBC_TUNABLES", "")
    ):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # A trim threshold of -1 turns trimming off altogether (mallopt(3)); the largest
    # positive value, 2**31 - 1, still returned everything above 2 GiB, which the 128 px
    # step frees and maps again on every step (2.4 million faults a step; 1.1 million
    # with trimming off).
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    return all([mallopt(*setting) == 1 for setting in settings])  # 1: success
