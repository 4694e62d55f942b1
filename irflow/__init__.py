"""irflow: reproducible, workflow-orchestrated training and evaluation of neural retrieval pipelines.

Heavy libraries (torch, transformers, faiss, bm25s) are imported inside the functions that need
them, so that ``irflow --help`` and the Snakefile's parse stay fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("irflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+src"

__all__ = ["__version__"]
