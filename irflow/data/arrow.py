"""Memory-mapped Arrow IPC tables: how prepared texts and token ids live on disk.

Later steps open them with :func:`open_table`, which maps the file instead of reading it, so a
corpus never has to fit in Python objects.
"""

from __future__ import annotations

from pathlib import Path

TEXTS = "texts.arrow"
TOKENS = "tokens.arrow"


class BatchWriter:
    """Streams rows into an Arrow IPC file in fixed-size record batches."""

    def __init__(self, path: Path, schema, batch_rows: int = 8192):
        import pyarrow as pa

        self._pa = pa
        self.schema = schema
        self.batch_rows = batch_rows
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self._cols: dict[str, list] = {f.name: [] for f in schema}
        self.rows = 0

    def add(self, **row) -> None:
        for k, v in row.items():
            self._cols[k].append(v)
        if len(self._cols[self.schema[0].name]) >= self.batch_rows:
            self.flush()

    def add_many(self, **cols) -> None:
        for k, v in cols.items():
            self._cols[k].extend(v)
        if len(self._cols[self.schema[0].name]) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        n = len(self._cols[self.schema[0].name])
        if n:
            batch = self._pa.record_batch([self._cols[f.name] for f in self.schema], schema=self.schema)
            self._writer.write_batch(batch)
            self.rows += n
            self._cols = {f.name: [] for f in self.schema}

    def close(self) -> None:
        self.flush()
        self._writer.close()
        self._sink.close()


def open_table(path: str | Path):
    """The whole table, memory-mapped (zero-copy)."""
    import pyarrow as pa

    source = pa.memory_map(str(path), "r")
    return pa.ipc.open_file(source).read_all()


class MappedTable:
    """A table memory-mapped through Python's ``mmap``, whose pages the reader can hand back.

    Reading scattered rows of a large mapped file (a step's candidate passages spread over the
    whole corpus) maps nearly every page of it into the process, and resident file pages count in
    its RSS, which schedulers (and Snakemake's benchmark) take for the process's memory: 600 MB of
    texts at 1M passages. :meth:`release` drops the pages from this process
    (``madvise(MADV_DONTNEED)``; they stay in the page cache), so a reader that releases after each
    slice it gathers holds one slice's pages, not the file's.
    """

    def __init__(self, path: str | Path):
        import mmap

        import pyarrow as pa

        with open(path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.table = pa.ipc.open_file(pa.py_buffer(self._mm)).read_all()

    def release(self) -> None:
        import mmap

        if hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)
