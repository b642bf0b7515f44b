import gc
import os


# Four CPU devices for the multi-device tests; must be set before JAX's backend starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import jax.random as jr  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402


jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# Each new shape recompiles: keep examples few and shapes from small fixed sets.
settings.register_profile("default", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def getkey():
    """A fresh key per call, deterministic per test."""
    state = {"key": jr.key(0)}

    def next_key():
        state["key"], key = jr.split(state["key"])
        return key

    return next_key


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Free each test module's compiled executables when it ends.

    Every XLA CPU executable maps its code into the process; the whole suite in one
    process compiles enough of them to pass Linux's `vm.max_map_count` (65530), after
    which the next compile aborts or segfaults inside LLVM. Clearing JAX's caches
    between modules keeps the count to one module's worth.
    """
    yield
    jax.clear_caches()
    gc.collect()
