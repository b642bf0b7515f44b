"""Shared jaxtyping aliases. One place, so every signature speaks the same shapes.

Arguments that a public function validates itself (images, spectra, knots) are
annotated plain `ArrayLike` with the shape in the docstring, so that bad input meets
the library's own error naming the argument rather than a generic type-check error;
return values and internal functions carry full shapes.
"""

import numbers

import numpy as np
from jaxtyping import Array, ArrayLike, Float


#: One image, channels first, values in [-1, 1].
Image = Float[Array, "C H W"]
#: A radially averaged power spectrum: one value per radial bin `0..R`.
RAPSD = Float[Array, "*batch bins"]
#: A log signal-to-noise ratio $\lambda = \log(\alpha^2 / \sigma^2)$, any shape.
LogSNR = Float[ArrayLike, "*shape"]
#: Diffusion time in [0, 1]; t = 0 is clean data, t = 1 is noise. Any shape.
Time = Float[ArrayLike, "*shape"]
#: A count or size the function checks itself (`as_integer`): Python, numpy or JAX
#: integers and 0-d integer arrays are accepted; anything else meets the library's own
#: error naming the argument, not a generic type-check error.
IntScalar = numbers.Real | np.generic | np.ndarray | Array
#: A real number the function checks itself (`as_real`): Python, numpy or JAX scalars
#: and 0-d arrays.
RealScalar = numbers.Real | np.generic | np.ndarray | Array
