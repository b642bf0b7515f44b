"""Data parallelism: one device mesh with a `"data"` axis over every device."""

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


def data_mesh() -> Mesh:
    """A mesh of every device (all hosts) along one `"data"` axis.

    Its axis is `Auto`: XLA propagates a batch's sharding through every op (GSPMD), so
    the library's functions need no sharding annotations.
    """
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Arrays split along their first (batch) axis over the mesh's `"data"` axis."""
    return NamedSharding(data_mesh() if mesh is None else mesh, PartitionSpec("data"))


def replicated(mesh: Mesh | None = None) -> NamedSharding:
    """Arrays held whole on every device of the mesh (parameters, optimiser state)."""
    return NamedSharding(data_mesh() if mesh is None else mesh, PartitionSpec())
