"""The store's contract: keys form a Merkle chain, publication is atomic, verify finds tampering.

Also: concurrent runs of one key compute once (real processes racing), inputs are verified before a
step reads them, verify never reads outside an artifact, and a full disk or an unwritable store ends
in one IrflowError with nothing published.
"""

import errno
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import irflow
from irflow import store as store_mod
from irflow.errors import IrflowError
from irflow.store import (
    Artifact, canonical_json, compute_key, is_complete, read_manifest, verify, verify_input,
)


def test_key_is_canonical_and_depends_on_everything():
    k = compute_key("index", {"a": 1, "b": [1, 2]}, {"x": "k1"})
    assert k == compute_key("index", {"b": [1, 2], "a": 1}, {"x": "k1"})  # key order is irrelevant
    assert len(k) == 16 and all(c in "0123456789abcdef" for c in k)
    assert k != compute_key("index", {"a": 2, "b": [1, 2]}, {"x": "k1"})
    assert k != compute_key("index", {"a": 1, "b": [1, 2]}, {"x": "k2"})
    assert k != compute_key("search", {"a": 1, "b": [1, 2]}, {"x": "k1"})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_merkle_chain_through_artifacts(tmp_path):
    with Artifact(tmp_path, "prepare", {"p": 1}) as a:
        (a.tmp / "f.txt").write_text("x")
    with Artifact(tmp_path, "encode", {"q": 1}, {"prepared": a.path}) as b:
        (b.tmp / "g.txt").write_text("y")
    m = read_manifest(b.path)
    assert m["inputs"]["prepared"]["key"] == a.key
    assert b.key == compute_key("encode", {"q": 1}, {"prepared": a.key})
    assert m["files"]["g.txt"]["bytes"] == 1
    assert m["files"]["g.txt"]["mtime_ns"] == (b.path / "g.txt").stat().st_mtime_ns
    assert "numpy" in m["versions"] and m["versions"]["python"] == platform.python_version()


def test_failed_step_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with Artifact(tmp_path, "prepare", {"p": 1}) as a:
            (a.tmp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert not a.path.exists()
    assert list((tmp_path / "prepare").iterdir()) == []  # the temporary sibling is gone too


def test_incomplete_leftover_is_replaced(tmp_path):
    art = Artifact(tmp_path, "prepare", {"p": 1})
    art.path.mkdir(parents=True)  # what Snakemake leaves: the output's parent folder, no manifest
    (art.path / "stale.txt").write_text("old")
    assert not art.complete
    with art:
        (art.tmp / "new.txt").write_text("new")
    assert is_complete(art.path)
    assert sorted(p.name for p in art.path.iterdir()) == ["manifest.json", "new.txt"]


def test_expect_mismatch_is_an_error(tmp_path):
    with pytest.raises(IrflowError, match="disagree"):
        Artifact(tmp_path, "prepare", {"p": 1}, expect=tmp_path / "prepare" / "0000000000000000")


def test_input_must_be_complete(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(IrflowError, match="not a complete irflow artifact"):
        Artifact(tmp_path, "encode", {}, {"prepared": tmp_path / "half"})


def test_verify_reports_altered_missing_and_unexpected(tmp_path):
    with Artifact(tmp_path, "prepare", {"p": 1}) as a:
        (a.tmp / "a.txt").write_text("aaaa")
        (a.tmp / "b.txt").write_text("bbbb")
    assert verify(a.path) == []
    (a.path / "a.txt").write_text("aaab")  # same size, other content
    (a.path / "b.txt").unlink()
    (a.path / "c.txt").write_text("c")
    assert verify(a.path) == ["altered: a.txt", "missing: b.txt", "unexpected: c.txt"]
    assert json.loads((a.path / "manifest.json").read_text())["key"] == a.key


# ------------------------------------------------------------------------------------------ helpers

REPO = Path(irflow.__file__).resolve().parent.parent


def _publish(store, files=None, params=None) -> Artifact:
    """A published prepare artifact holding ``files`` (name -> bytes)."""
    files = files or {"a.txt": b"aaaa", "sub/b.txt": b"bbbb"}

    def work(art):
        for name, data in files.items():
            (art.tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (art.tmp / name).write_bytes(data)
        return {"files": len(files)}

    return Artifact(store, "prepare", params or {"p": 1}).build(work)


def _bump_mtime(f: Path, by_ns: int = 1_000_000_000) -> None:
    """A later edit's mtime (file timestamps are coarse: an edit right after publishing can keep it)."""
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + by_ns))


def _flip_byte(f: Path, keep_mtime: bool = False) -> None:
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[0] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns if keep_mtime else st.st_mtime_ns + 1_000_000_000))


def _leftovers(step_dir: Path) -> list[str]:
    return sorted(p.name for p in step_dir.iterdir() if ".tmp-" in p.name)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


# -------------------------------------------------------------------------------------------- build


def test_build_computes_once_and_records_stats(tmp_path):
    calls = []

    def work(art):
        calls.append(art.tmp)
        (art.tmp / "out.txt").write_text("result")
        return {"rows": 3}

    art = Artifact(tmp_path, "prepare", {"p": 1}).build(work)
    assert art.complete and read_manifest(art.path)["stats"] == {"rows": 3}
    again = Artifact(tmp_path, "prepare", {"p": 1})
    assert again.build(work) is again and again.path == art.path
    assert len(calls) == 1  # complete: the second build did nothing
    assert verify(art.path) == [] and _leftovers(art.path.parent) == []


def test_build_failure_publishes_nothing(tmp_path):
    def work(art):
        (art.tmp / "half.txt").write_text("half")
        raise RuntimeError("killed")

    art = Artifact(tmp_path, "prepare", {"p": 1})
    with pytest.raises(RuntimeError, match="killed"):
        art.build(work)
    assert list((tmp_path / "prepare").iterdir()) == []  # neither the artifact nor its temp
    # the lock was released: a second build in this process does not deadlock
    assert art.build(lambda a: (a.tmp / "x").write_text("x") and None).complete


def test_a_step_may_not_publish_a_symlink(tmp_path):
    (tmp_path / "secret").write_text("outside")

    def work(art):
        (art.tmp / "link").symlink_to(tmp_path / "secret")

    with pytest.raises(IrflowError, match="symbolic link 'link'"):
        Artifact(tmp_path / "store", "prepare", {"p": 1}).build(work)
    assert list((tmp_path / "store" / "prepare").iterdir()) == []


_RACE = textwrap.dedent("""
    import logging, os, sys, time
    from pathlib import Path
    from irflow.store import Artifact

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store, me, other, form = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    logs = store.parent

    def wait_for(cond):  # a bound on liveness only; the test asserts nothing about time
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not cond():
            time.sleep(0.02)

    def work(art):
        (logs / f"computed-{me}").write_text(str(os.getpid()))
        # hold the key's lock until the other process says it waits on it
        wait_for(lambda: "waiting" in (logs / f"err-{other}").read_text())
        (art.tmp / "out.txt").write_text("result")
        return {"by": me}

    art = Artifact(store, "prepare", {"p": 1})
    (logs / f"started-{me}").write_text("")
    if form == "build":
        art.build(work)
    else:  # the context-manager form: both compute, both publish; the loser discards its copy
        with art:
            (art.tmp / "out.txt").write_text("result")
            (logs / f"computed-{me}").write_text(str(os.getpid()))
            wait_for(lambda: (logs / f"computed-{other}").exists())
    print(art.path)
""")


def _race(tmp_path: Path, form: str) -> list[subprocess.CompletedProcess]:
    store = tmp_path / "store"
    procs = []
    for me, other in (("A", "B"), ("B", "A")):
        (tmp_path / f"err-{me}").write_text("")
    for me, other in (("A", "B"), ("B", "A")):
        err = open(tmp_path / f"err-{me}", "w")
        procs.append((subprocess.Popen([sys.executable, "-c", _RACE, str(store), me, other, form], env=_env(),
                                       stdout=subprocess.PIPE, stderr=err, text=True), err, me))
    out = []
    for p, err, me in procs:
        stdout, _ = p.communicate(timeout=300)
        err.close()
        stderr = (tmp_path / f"err-{me}").read_text()
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_two_processes_building_one_key_compute_once(tmp_path):
    results = _race(tmp_path, "build")
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert not any("Traceback" in r.stderr for r in results)
    computed = sorted(p.name for p in tmp_path.glob("computed-*"))
    assert len(computed) == 1  # one computed; the other waited on the lock and reused it
    winner = computed[0][-1]
    loser = next(r for r in results if r.args[-3] != winner)
    assert "waiting" in loser.stderr and "reusing it" in loser.stderr
    path = Path(results[0].stdout.strip())
    assert path == Path(results[1].stdout.strip()) and is_complete(path)
    assert read_manifest(path)["stats"] == {"by": winner}
    assert verify(path) == [] and _leftovers(path.parent) == []


def test_two_processes_publishing_one_key_both_succeed(tmp_path):
    results = _race(tmp_path, "with")
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert not any("Traceback" in r.stderr for r in results)
    assert len(list(tmp_path.glob("computed-*"))) == 2  # both computed (this form does not wait)
    path = Path(results[0].stdout.strip())
    assert path == Path(results[1].stdout.strip())
    assert sum("reusing it" in r.stderr for r in results) == 1
    assert verify(path) == [] and [p.name for p in path.parent.iterdir()] == [path.name]


def test_losing_the_rename_to_a_publisher_outside_the_lock_is_success(tmp_path, monkeypatch):
    """Another host (or an older irflow) publishes between our check and our rename: ENOTEMPTY."""
    real_replace, raced = os.replace, []

    def replace(src, dst):
        if Path(src).name.startswith(".") and ".tmp-" in Path(src).name:
            shutil.copytree(src, dst)  # the other publisher's complete copy lands first
            raced.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    art = _publish(tmp_path)
    assert raced == [art.path]
    assert verify(art.path) == [] and _leftovers(art.path.parent) == []


# ---------------------------------------------------------------------------------- verified inputs


def _encode_with(store, inputs):
    return Artifact(store, "encode", {"q": 1}, inputs)


def test_altered_input_is_refused_naming_the_file(tmp_path):
    a = _publish(tmp_path)
    assert _encode_with(tmp_path, {"prepared": a.path}).key  # intact: accepted
    _flip_byte(a.path / "sub" / "b.txt")
    with pytest.raises(IrflowError) as e:
        _encode_with(tmp_path, {"prepared": a.path})
    altered = a.path / "sub" / "b.txt"
    assert str(e.value) == f"{altered}: altered since it was published (sha256 differs from its manifest)"
    assert not (tmp_path / "encode").exists()  # refused before anything was created


def test_input_size_is_always_checked(tmp_path):
    a = _publish(tmp_path)
    f = a.path / "a.txt"
    st = f.stat()
    f.write_bytes(b"aaaaa")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored: only the size tells
    with pytest.raises(IrflowError, match=r"a\.txt: altered since it was published \(5 bytes, its manifest"):
        verify_input(a.path)


def test_missing_unexpected_and_symlinked_inputs_are_refused(tmp_path):
    a = _publish(tmp_path)
    (a.path / "a.txt").unlink()
    with pytest.raises(IrflowError, match=r"a\.txt: missing"):
        verify_input(a.path)

    b = _publish(tmp_path, params={"p": 2})
    (b.path / "sub" / "extra.txt").write_text("x")
    with pytest.raises(IrflowError, match=r"sub/extra\.txt: not listed in its artifact's manifest"):
        verify_input(b.path)

    c = _publish(tmp_path, params={"p": 3})
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"aaaa")  # same bytes: only the link itself is wrong
    os.utime(outside, ns=(0, (c.path / "a.txt").stat().st_mtime_ns))
    (c.path / "a.txt").unlink()
    (c.path / "a.txt").symlink_to(outside)
    with pytest.raises(IrflowError, match=r"a\.txt: a symbolic link inside an artifact \(not followed\)"):
        verify_input(c.path)


def test_touched_input_is_rehashed_once_then_cached(tmp_path, monkeypatch):
    a = _publish(tmp_path)
    for f in ("a.txt", "sub/b.txt"):
        _bump_mtime(a.path / f)  # e.g. the store was copied without preserving times
    hashed = []
    real = store_mod._digest_fd
    monkeypatch.setattr(store_mod, "_digest_fd", lambda fd: hashed.append(fd) or real(fd))
    assert verify_input(a.path)["key"] == a.key
    assert len(hashed) == 2  # both re-hashed: content unchanged, so accepted
    cache = a.path.parent / f".{a.key}.hashes.json"
    assert set(json.loads(cache.read_text())) == {"a.txt", "sub/b.txt"}
    verify_input(a.path)
    assert len(hashed) == 2  # the cache answered
    assert verify(a.path) == []  # the cache lives beside the artifact, not in it
    _flip_byte(a.path / "a.txt")  # a later edit changes mtime/ctime: the cached entry no longer holds
    with pytest.raises(IrflowError, match=r"a\.txt: altered since it was published"):
        verify_input(a.path)


def test_old_manifest_without_mtimes_is_rehashed(tmp_path):
    a = _publish(tmp_path)
    m = json.loads((a.path / "manifest.json").read_text())
    for meta in m["files"].values():
        del meta["mtime_ns"]
    (a.path / "manifest.json").write_text(json.dumps(m))
    assert verify_input(a.path)["key"] == a.key
    _flip_byte(a.path / "a.txt", keep_mtime=True)  # same size, same mtime: only a re-hash tells
    with pytest.raises(IrflowError, match=r"a\.txt: altered since it was published \(sha256"):
        _encode_with(tmp_path, {"prepared": a.path})


def test_altered_input_is_refused_by_the_cli_step_that_reads_it(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"word{i} text"}) + "\n" for i in range(20)))
    store = tmp_path / "store"
    run = lambda *args: subprocess.run([sys.executable, "-m", "irflow.cli", *map(str, args)], env=_env(),
                                       capture_output=True, text=True, cwd=tmp_path)
    r = run("prepare", "--dataset", docs, "--store", store)
    assert r.returncode == 0, r.stderr
    prepared = Path(r.stdout.strip().splitlines()[-1])
    arrow = next(prepared.rglob("*.arrow"))
    _flip_byte(arrow)
    r = run("index", "bm25", "--texts", prepared, "--store", store)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{arrow}: altered since it was published (sha256 differs from its manifest)" in r.stderr
    assert not (store / "index").exists() or not list((store / "index").rglob("manifest.json"))


# ------------------------------------------------------------------------------------- verify safety


def _edit_manifest(path: Path, edit) -> None:
    m = json.loads((path / "manifest.json").read_text())
    edit(m)
    (path / "manifest.json").write_text(json.dumps(m))


def test_verify_never_follows_paths_out_of_the_artifact(tmp_path):
    a = _publish(tmp_path / "store")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    entry = {"sha256": hashlib.sha256(b"secret").hexdigest(), "bytes": 6}
    _edit_manifest(a.path, lambda m: m["files"].update({"../../../outside.txt": entry, str(outside): entry,
                                                        "./a.txt": entry, "sub//b.txt": entry}))
    problems = verify(a.path)
    assert problems == [f"unsafe: {n} (outside the artifact, not followed)"
                        for n in sorted(["../../../outside.txt", str(outside), "./a.txt", "sub//b.txt"])]
    with pytest.raises(IrflowError, match="unsafe file name"):
        verify_input(a.path)


def test_verify_reports_symlinks_without_following_them(tmp_path):
    a = _publish(tmp_path / "store")
    out_dir = tmp_path / "elsewhere"
    out_dir.mkdir()
    (out_dir / "b.txt").write_bytes(b"bbbb")  # what the manifest expects, but outside
    (tmp_path / "a-copy").write_bytes(b"aaaa")
    shutil.rmtree(a.path / "sub")
    (a.path / "sub").symlink_to(out_dir)
    (a.path / "a.txt").unlink()
    (a.path / "a.txt").symlink_to(tmp_path / "a-copy")
    (a.path / "c.txt").symlink_to("/etc/hostname")
    assert verify(a.path) == ["symlink: a.txt (not followed)", "symlink: sub/b.txt (not followed)",
                              "symlink: c.txt (not followed)", "symlink: sub (not followed)"]


def test_verify_does_not_open_a_fifo(tmp_path):
    a = _publish(tmp_path)
    (a.path / "a.txt").unlink()
    os.mkfifo(a.path / "a.txt")  # opening it for reading would block forever
    os.mkfifo(a.path / "pipe")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("verify blocked on a FIFO"))
    signal.alarm(30)
    try:
        assert verify(a.path) == ["special: a.txt (not a regular file)", "special: pipe (not a regular file)"]
        with pytest.raises(IrflowError, match="a.txt: not a regular file"):
            verify_input(a.path)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("text, problem", [
    ("{", "corrupt manifest.json (Expecting property name"),
    ("[1, 2]", "corrupt manifest.json (not a JSON object)"),
    ('{"key": "0123456789abcdef", "files": {"a.txt": {"bytes": "4"}}}',
     "corrupt manifest.json (bad entry for 'a.txt')"),
    ('{"key": "../x", "files": {}}', "corrupt manifest.json (no valid key)"),
    ('{"key": "0123456789abcdef", "files": []}', "corrupt manifest.json (no file list)"),
])
def test_a_corrupt_manifest_is_a_reported_problem(tmp_path, text, problem):
    a = _publish(tmp_path)
    (a.path / "manifest.json").write_text(text)
    [got] = verify(a.path)
    assert got.startswith(problem)
    with pytest.raises(IrflowError, match=r"corrupt manifest\.json"):
        verify_input(a.path)


def test_cli_verify_reports_every_artifact_given(tmp_path):
    from click.testing import CliRunner

    from irflow.cli import cli

    good = _publish(tmp_path, params={"p": 1}).path
    corrupt = _publish(tmp_path, params={"p": 2}).path
    (corrupt / "manifest.json").write_text("{")
    tampered = _publish(tmp_path, params={"p": 3}).path
    _flip_byte(tampered / "a.txt", keep_mtime=True)
    bare = tmp_path / "bare"
    bare.mkdir()
    r = CliRunner().invoke(cli, ["verify", str(corrupt), str(tampered), str(bare), str(good)])
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].startswith(f"{corrupt}: corrupt manifest.json")
    assert lines[1:] == [f"{tampered}: altered: a.txt",
                         f"{bare}: not a complete irflow artifact (no manifest.json)", f"{good}: ok"]
    link = tmp_path / "latest"
    link.symlink_to(good)  # a link the user names is followed; links inside an artifact are not
    r = CliRunner().invoke(cli, ["verify", str(good), str(link)])
    assert r.exit_code == 0 and r.output == f"{good}: ok\n{link}: ok\n"


# --------------------------------------------------------------------------------- environment errors


def _fill(art):
    with open(art.tmp / "big.bin", "wb") as f:
        f.write(b"\0" * (2 << 20))


def test_full_disk_while_working_is_one_line_and_publishes_nothing(tmp_path):
    def work(art):  # a real ENOSPC from the kernel: /dev/full is a device that is always full
        (art.tmp / "part.bin").write_bytes(b"x")
        with open("/dev/full", "wb") as f:
            f.write(b"x" * 100_000)

    art = Artifact(tmp_path, "prepare", {"p": 1})
    with pytest.raises(IrflowError) as e:
        art.build(work)
    assert str(e.value) == f"no space left on device: {art.path}"
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
    assert list((tmp_path / "prepare").iterdir()) == []
    with pytest.raises(IrflowError, match="no space left on device"):  # the context-manager form too
        with Artifact(tmp_path, "prepare", {"p": 2}) as b:
            work(b)
    assert list((tmp_path / "prepare").iterdir()) == []


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs (needs root: mount); None where it cannot be mounted."""
    d = tmp_path / "tiny"
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)],
                                           capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_full_disk_at_publish_is_one_line_and_publishes_nothing(tmp_path, tiny_fs, monkeypatch):
    if tiny_fs is not None:  # a real full file system
        store = tiny_fs / "store"

        def work(art):  # fills the disk but succeeds: the manifest is what does not fit
            with open(art.tmp / "fill.bin", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError as e:
                    assert e.errno == errno.ENOSPC

        art = Artifact(store, "prepare", {"p": 1})
        with pytest.raises(IrflowError) as e:
            art.build(_fill)  # 2 MiB into a 1 MiB file system
        assert str(e.value) == f"no space left on device: {art.path}"
        assert list((store / "prepare").iterdir()) == []
    else:  # no mount without root: the manifest's fsync reports the full disk, as NFS does
        store = tmp_path / "store"
        real = os.fsync

        def fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").endswith("manifest.json"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        work = _fill
    art = Artifact(store, "prepare", {"p": 2})
    with pytest.raises(IrflowError) as e:
        art.build(work)
    assert str(e.value) == f"no space left on device: {art.path}"
    assert list((store / "prepare").iterdir()) == []  # temp removed, nothing published
    monkeypatch.undo()
    assert _publish(store, {"small.txt": b"ok"}).complete  # the space was given back


@pytest.fixture
def readonly_store(tmp_path):
    """A store holding one complete artifact, then made read-only (chmod; a read-only tmpfs as root)."""
    d = tmp_path / "ro"
    d.mkdir()
    mounted = os.geteuid() == 0
    if mounted:  # root ignores permission bits: use a file system mounted read-only
        mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)]
        if subprocess.run(mount, capture_output=True).returncode:
            pytest.skip("running as root without permission to mount: cannot make a read-only store")
    art = _publish(d / "store")
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
    else:
        for p in (d / "store", art.path.parent):
            p.chmod(0o555)
    try:
        yield d / "store", art
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(d)], check=False)
        else:
            for p in (d / "store", art.path.parent):
                p.chmod(0o755)


def test_read_only_store_serves_complete_artifacts_and_refuses_new_ones(readonly_store):
    store, art = readonly_store
    again = Artifact(store, "prepare", {"p": 1})
    assert again.build(_fill).path == art.path  # complete: nothing to write, no lock taken
    _encode_with(store, {"prepared": art.path})  # inputs are verified without writing anything
    with pytest.raises(IrflowError) as e:
        Artifact(store, "prepare", {"p": 9}).build(_fill)
    assert str(e.value).startswith(f"{store}: the store is ")
    assert "read-only" in str(e.value) or "not writable" in str(e.value)
    with pytest.raises(IrflowError, match=f"^{store}: the store is "):
        with Artifact(store, "prepare", {"p": 9}):
            pass


def test_store_that_is_a_file_is_one_line(tmp_path):
    store = tmp_path / "store"
    store.write_text("not a folder")
    for make in (lambda: Artifact(store, "prepare", {"p": 1}).build(_fill),
                 lambda: Artifact(store, "prepare", {"p": 1}).__enter__()):
        with pytest.raises(IrflowError) as e:
            make()
        assert str(e.value) == f"{store}: the store must be a directory, but this is a file"
    store.unlink()
    store.mkdir()
    (store / "prepare").write_text("in the way")
    with pytest.raises(IrflowError, match=f"^{store / 'prepare'}: the store must be a directory"):
        Artifact(store, "prepare", {"p": 1}).build(_fill)
