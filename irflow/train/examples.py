"""Training examples and teacher scores held as Arrow columns, one query materialised at a time.

At MS MARCO scale (~500k training queries, teacher scores for their top 100: ~50M pairs) Python
lists and dicts of every example and every teacher score take 10-20 GB per training process; the
same data as Arrow columns take a few hundred MB. :class:`ExampleTable` is a sequence of
:class:`Example` that builds a query's example (its lists and its teacher dict) only when a step
asks for it, and answers the questions asked of all queries at once (which are usable, which
documents they name) with vectorised Arrow compute.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Example:
    qid: str
    positives: list[str]
    negatives: list[str]  # first-stage order, non-relevant (or unjudged)
    teacher: dict[str, float] | None = None
    grades: dict[str, int] | None = None  # qrels grade of each judged doc in the corpus (graded losses)


_LISTS = ("positives", "negatives", "teacher_docs", "teacher_scores", "judged_docs", "judged_grades")


def _schema():
    import pyarrow as pa

    s, f = pa.list_(pa.string()), pa.list_(pa.float64())
    return pa.schema([("qid", pa.string()), ("positives", s), ("negatives", s), ("teacher_docs", s),
                      ("teacher_scores", f), ("judged_docs", s), ("judged_grades", pa.list_(pa.int64()))])


class TeacherScores:
    """qid -> {doc id: score} over a ``score`` artifact's table, sorted by query once (Arrow)."""

    def __init__(self, table):
        import pyarrow.compute as pc

        t = table.select(["qid", "doc_id", "score"]).sort_by("qid").combine_chunks()  # stable: doc order kept
        self.table = t
        self._docs, self._scores = t.column("doc_id"), t.column("score").to_numpy()
        q = t.column("qid")
        n = len(q)
        if n == 0:
            self._span: dict[str, tuple[int, int]] = {}
            return
        change = np.flatnonzero(pc.not_equal(q.slice(1), q.slice(0, n - 1)).to_numpy(zero_copy_only=False)) + 1
        starts = np.concatenate(([0], change))
        ends = np.concatenate((change, [n]))
        names = q.take(starts).to_pylist()
        self._span = dict(zip(names, zip(starts.tolist(), ends.tolist())))

    @classmethod
    def of(cls, teacher) -> TeacherScores:
        """``teacher`` as TeacherScores (a mapping qid -> {doc id: score}, or TeacherScores already)."""
        if isinstance(teacher, TeacherScores):
            return teacher
        import pyarrow as pa

        rows = [(q, d, float(x)) for q, ds in teacher.items() for d, x in ds.items()]
        return cls(pa.table({"qid": pa.array([r[0] for r in rows], pa.string()),
                             "doc_id": pa.array([r[1] for r in rows], pa.string()),
                             "score": pa.array([r[2] for r in rows], pa.float64())}))

    @classmethod
    def read(cls, teacher_dir: Path) -> TeacherScores:
        import pyarrow.parquet as pq

        from ..score import TEACHER

        return cls(pq.read_table(Path(teacher_dir) / TEACHER, columns=["qid", "doc_id", "score"]))

    def __contains__(self, qid) -> bool:
        return qid in self._span

    def count(self, qid: str) -> int:
        a, b = self._span.get(qid, (0, 0))
        return b - a

    def get(self, qid: str, default=None) -> dict[str, float] | None:
        if qid not in self._span:
            return default
        a, b = self._span[qid]
        return dict(zip(self._docs.slice(a, b - a).to_pylist(), self._scores[a:b].tolist()))

    def doc_ids(self):
        return self._docs


class ExampleTable(Sequence):
    """The examples of one part as Arrow columns (see the module docstring).

    ``teacher`` (:class:`TeacherScores`), if given, replaces an example's own teacher scores
    where it has scores for the query (as the stage's ``--teacher`` input does).
    """

    def __init__(self, table, teacher: TeacherScores | None = None):
        self._t = table  # chunked as read: combining would copy every list column once more
        self.teacher = teacher

    @classmethod
    def read(cls, examples_dir: Path, part: str) -> ExampleTable:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from ..preprocess import EXAMPLES

        import pyarrow as pa

        f = pq.ParquetFile(Path(examples_dir) / EXAMPLES)
        have = set(f.schema_arrow.names)
        names = [n for n in _schema().names if n in have]
        # streamed in batches, each filtered to the part: decoding the file whole peaks at ~3x the
        # table (570 MB for the 146 MB of 100k queries x 100 candidates; ~390 MB this way)
        batches = [b.filter(pc.equal(b.column("part"), part)).select(names)
                   for b in f.iter_batches(batch_size=4096, columns=["part", *names], use_threads=False)]
        t = pa.Table.from_batches(batches, schema=pa.schema([f.schema_arrow.field(n) for n in names]))
        for name, typ in zip(_schema().names, _schema().types):  # files of older versions lack the judged columns
            if name not in t.column_names:
                t = t.append_column(name, _empty_lists(len(t), typ))
        return cls(t.select(_schema().names))

    @classmethod
    def of(cls, examples) -> ExampleTable:
        """``examples`` as a table (a list of :class:`Example`, or a table already)."""
        if isinstance(examples, ExampleTable):
            return examples
        import pyarrow as pa

        rows = [{"qid": ex.qid, "positives": list(ex.positives), "negatives": list(ex.negatives),
                 "teacher_docs": list(ex.teacher or ()), "teacher_scores": list((ex.teacher or {}).values()),
                 "judged_docs": list(ex.grades or ()), "judged_grades": list((ex.grades or {}).values())}
                for ex in examples]
        return cls(pa.Table.from_pylist(rows, schema=_schema()))

    @property
    def table(self):
        """The Arrow table (qid and the list columns)."""
        return self._t

    def with_teacher(self, teacher: TeacherScores | None) -> ExampleTable:
        return ExampleTable(self._t, teacher)

    def select(self, indices) -> ExampleTable:
        import pyarrow as pa

        return ExampleTable(self._t.take(pa.array(np.asarray(indices, dtype=np.int64))), self.teacher)

    def __len__(self) -> int:
        return self._t.num_rows

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.select(np.arange(len(self))[i])
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(i)
        return self._example(self._t.slice(i % n, 1).to_pylist()[0])

    def __iter__(self) -> Iterator[Example]:
        for batch in self._t.to_batches(max_chunksize=1024):
            for r in batch.to_pylist():
                yield self._example(r)

    def _example(self, r: dict) -> Example:
        own = dict(zip(r["teacher_docs"], r["teacher_scores"])) or None
        t = (self.teacher.get(r["qid"]) or own) if self.teacher is not None else own
        return Example(r["qid"], r["positives"], r["negatives"], t,
                       dict(zip(r["judged_docs"], r["judged_grades"])) or None)

    @property
    def qids(self) -> list[str]:
        return self._t.column("qid").to_pylist()

    def counts(self) -> dict[str, np.ndarray]:
        """Per example: the number of positives, negatives and teacher-scored documents."""
        import pyarrow.compute as pc

        def n(col: str) -> np.ndarray:
            return pc.list_value_length(self._t.column(col)).fill_null(0).to_numpy(zero_copy_only=False)

        teacher = n("teacher_docs")
        if self.teacher is not None:
            given = np.fromiter((self.teacher.count(q) for q in self.qids), dtype=np.int64, count=len(self))
            teacher = np.where(given > 0, given, teacher)
        return {"positives": n("positives"), "negatives": n("negatives"), "teacher": teacher}

    def doc_ids(self):
        """Every document the examples (and the attached teacher) name, once (an Arrow array)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        parts = [pc.list_flatten(self._t.column(c)) for c in ("positives", "negatives", "teacher_docs",
                                                               "judged_docs")]
        if self.teacher is not None:
            parts.append(self.teacher.doc_ids())
        return pc.unique(pa.chunked_array([c for p in parts for c in _chunks(p)], type=pa.string()))


def _chunks(a):
    return a.chunks if hasattr(a, "chunks") else [a]


def _empty_lists(n: int, typ):
    import pyarrow as pa

    return pa.array([[]] * n, type=typ)
