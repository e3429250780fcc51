"""gansweep: layer-wise transfer sweeps for pretrained GANs.

One installed package. Its subpackages live in the repository's top-level folders and are
mapped here by ``pyproject.toml`` (``package-dir``): ``gansweep.core`` (``core/``: models,
treatments, losses, data, metrics, the training loop), ``gansweep.sweep`` (``sweep/``: specs,
Ray Tune, the CLI), ``gansweep.results`` (``results/``: Parquet and the report) and
``gansweep.search_spaces`` (``search_spaces/``: the shipped sweep specs).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gansweep")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
