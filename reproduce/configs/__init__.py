"""One config module per experiment; each defines its presets as frozen dataclasses."""
