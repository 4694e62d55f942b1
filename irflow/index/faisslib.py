"""faiss: one import point, the GPU where faiss has one, the CPU otherwise.

faiss comes in two exclusive builds that install the same ``faiss`` module: ``faiss-cpu`` (the
``cpu`` extra) and ``faiss-gpu-cu12`` (the ``gpu`` extra). Installing both lets one overwrite the
other's files, so irflow depends on neither and names both when neither is there. With the GPU
build and a visible device (``faiss.get_num_gpus() > 0``) searches and index training run on the
GPU; any failure there (an index type without a GPU version, k above the GPU's limit, no memory)
falls back to the CPU with a warning, with the same results up to float rounding.
"""

from __future__ import annotations

import logging
import os

from ..errors import IrflowError

log = logging.getLogger(__name__)

MISSING = ("faiss is not installed: install irflow with the `cpu` extra (pip install 'irflow[cpu]', "
           "faiss-cpu) or, on a CUDA 12 machine, the `gpu` extra (pip install 'irflow[gpu]', faiss-gpu-cu12); "
           "one of the two, not both")

#: faiss's GPU k-selection handles at most this many results per query
GPU_MAX_K = 2048


def load():
    """The faiss module, or an IrflowError naming both extras."""
    try:
        import faiss
    except ImportError as e:
        raise IrflowError(MISSING) from e
    return faiss


def num_gpus(faiss=None) -> int:
    """GPUs faiss can use: 0 with faiss-cpu, with no device, or with ``IRFLOW_FAISS_GPU=0``."""
    if os.environ.get("IRFLOW_FAISS_GPU", "1") == "0":
        return 0
    faiss = faiss or load()
    try:
        return int(faiss.get_num_gpus()) if hasattr(faiss, "StandardGpuResources") else 0
    except Exception:  # noqa: BLE001  a GPU build on a machine whose driver fails: the CPU
        return 0


def _gpu_index(device: str | None) -> int:
    """The faiss GPU number of a torch device string ("cuda:1" -> 1; "cuda"/None -> 0)."""
    if device and device.startswith("cuda:"):
        return int(device.split(":", 1)[1])
    return 0


def to_gpu(index, device: str | None = None, faiss=None):
    """A GPU copy of ``index`` on ``device`` (a cuda device string), or None where that is not possible."""
    faiss = faiss or load()
    if num_gpus(faiss) == 0:
        return None
    try:
        res = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(res, _gpu_index(device), index)
        gpu.referenced_objects = getattr(gpu, "referenced_objects", []) + [res]  # keep res alive
        return gpu
    except Exception as e:  # noqa: BLE001  e.g. an index type without a GPU implementation
        log.warning("faiss: index %s cannot move to the GPU (%s); using the CPU", type(index).__name__, e)
        return None


def search(index, queries, k: int, device: str | None = None):
    """``index.search`` on the GPU when ``device`` is a cuda device and faiss has one, else the CPU."""
    faiss = load()
    if device and device.startswith("cuda") and k <= GPU_MAX_K:
        gpu = to_gpu(index, device, faiss)
        if gpu is not None:
            try:
                return gpu.search(queries, k)
            except Exception as e:  # noqa: BLE001  any GPU failure: the CPU
                log.warning("faiss: GPU search failed (%s); searching on the CPU", e)
    return index.search(queries, k)


def train(index, vectors, faiss=None):
    """``index`` (IVF, PQ) trained on ``vectors``: on the GPU where faiss has one, else on the CPU.

    Returns the trained CPU index (a GPU-trained one is copied back, so adding and writing stay the same).
    """
    faiss = faiss or load()
    if num_gpus(faiss) > 0:
        gpu = to_gpu(index, "cuda:0", faiss)
        if gpu is not None:
            try:
                gpu.train(vectors)
                return faiss.index_gpu_to_cpu(gpu)
            except Exception as e:  # noqa: BLE001  any GPU failure: the CPU
                log.warning("faiss: GPU training failed (%s); training on the CPU", e)
    index.train(vectors)
    return index
