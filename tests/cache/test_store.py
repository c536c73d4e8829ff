"""The clip store on its own, with real processes where the promise is about processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cache.clip_file import Clip, clip_file_size
from cache.keys import clip_key, config_hash, normalize_text
from cache.store import ClipStore

REPO = Path(__file__).resolve().parents[2]


def clip(n: int, value: int = 1) -> Clip:
    return Clip(pcm=bytes([value, 0]) * n, sample_rate=16000, num_channels=1)


def key(i: int) -> str:
    return clip_key(f"sentence {i}.", config_hash({"voice": "test"}))


def files_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("??/*.clip"))


def test_keys_depend_on_text_and_every_config_field() -> None:
    h = config_hash({"voice": "a", "speed": 1.0})
    assert h == config_hash({"speed": 1.0, "voice": "a"})  # canonical: order does not matter
    assert h != config_hash({"voice": "a", "speed": 1.1})
    assert clip_key("Hello  there.", h) == clip_key(" Hello there. ", h)
    assert clip_key("Hello there.", h) != clip_key("Hello there!", h)
    assert normalize_text("e\u0301") == "\u00e9"  # NFC: one spelling, one key


def test_put_get_roundtrip_and_stats(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, max_bytes=1 << 20)
    assert store.get(key(1)) is None
    store.put(key(1), clip(500, 7))
    assert store.get(key(1)) == clip(500, 7)
    s = store.stats()
    assert (s.hits, s.misses, s.clips) == (1, 1, 1)
    assert s.bytes == clip_file_size(1000) == files_size(tmp_path)


def test_corrupted_and_truncated_clips_are_detected_and_deleted(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, max_bytes=1 << 20)
    for i, damage in enumerate(("flip", "truncate", "empty")):
        store.put(key(i), clip(400))
        path = store.path(key(i))
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[100] ^= 0xFF
        elif damage == "truncate":
            data = data[: len(data) // 2]
        else:
            data = bytearray()
        path.write_bytes(bytes(data))
        assert store.get(key(i)) is None, damage
        assert not path.exists()
    assert store.stats().corrupt == 3 and store.stats().clips == 0
    store.put(key(0), clip(400))  # replaced by the next synthesis
    assert store.get(key(0)) == clip(400)


def test_lru_eviction_keeps_recently_used(tmp_path: Path) -> None:
    t = [1000.0]
    store = ClipStore(tmp_path, max_bytes=3 * clip_file_size(2000), clock=lambda: t[0])
    for i in range(3):
        t[0] += 1
        store.put(key(i), clip(1000))
    t[0] += 1
    assert store.get(key(0)) is not None  # 0 is now the most recently used
    t[0] += 1
    store.put(key(3), clip(1000))
    assert store.contains(key(0)) and not store.contains(key(1))
    assert store.stats().evictions == 1
    assert files_size(tmp_path) <= store.max_bytes


def _writer(root: str, worker: int, count: int, size: int, cap: int) -> None:
    store = ClipStore(Path(root), max_bytes=cap)
    for i in range(count):
        store.put(key(worker * 1000 + i), clip(size, worker + 1))
        # read back a few older ones so eviction order is mixed across processes
        store.get(key(worker * 1000 + i // 2))


def test_eviction_under_the_cap_with_concurrent_processes(tmp_path: Path) -> None:
    cap = 40 * clip_file_size(4000)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40, 2000, cap)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = ClipStore(tmp_path, max_bytes=cap)
    stats = store.stats()
    assert files_size(tmp_path) <= cap
    assert stats.bytes == files_size(tmp_path)  # the index and the disk agree
    assert stats.evictions >= 160 - 40  # 160 clips written, room for 40
    assert not list((tmp_path / "tmp").iterdir())  # no temp file left behind
    for p in tmp_path.glob("??/*.clip"):
        assert store.get(p.stem) is not None  # every survivor is whole


SLOW_WRITER = """
import sys, time
from pathlib import Path
from cache.store import ClipStore
store = ClipStore(Path(sys.argv[1]), max_bytes=1 << 24)
with store.writer(sys.argv[2], 16000, 1) as w:
    for i in range(1000):
        w.write(b"\\x01\\x00" * 1600)
        if i == 3:
            print("writing", flush=True)
        time.sleep(0.01)
print("done", flush=True)
"""


def test_a_killed_writer_leaves_nothing_readable(tmp_path: Path) -> None:
    k = key(42)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(tmp_path), k],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert list((tmp_path / "tmp").iterdir()), "the writer should have been mid-write"
    store = ClipStore(tmp_path, max_bytes=1 << 24)  # as a restarted process sees it
    assert store.get(k) is None
    assert not store.contains(k) and store.stats().clips == 0


def test_stale_temp_files_are_swept_on_open(tmp_path: Path) -> None:
    ClipStore(tmp_path, max_bytes=1 << 20)
    stale = tmp_path / "tmp" / "dead.123.abcd.part"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    ClipStore(tmp_path, max_bytes=1 << 20)
    assert not stale.exists()


RESTART_READER = """
import sys
from pathlib import Path
from cache.store import ClipStore
clip = ClipStore(Path(sys.argv[1]), max_bytes=1 << 24).get(sys.argv[2])
sys.stdout.buffer.write(clip.pcm if clip else b"MISS")
"""


def test_clips_survive_a_process_restart(tmp_path: Path) -> None:
    ClipStore(tmp_path, max_bytes=1 << 24).put(key(5), clip(300, 9))
    out = subprocess.run(
        [sys.executable, "-c", RESTART_READER, str(tmp_path), key(5)],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    assert out == clip(300, 9).pcm


def test_a_clip_larger_than_the_cap_is_not_stored(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, max_bytes=1000)
    store.put(key(1), clip(2000))
    assert not store.contains(key(1)) and files_size(tmp_path) == 0


def test_bad_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ClipStore(tmp_path, max_bytes=0)
