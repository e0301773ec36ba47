"""The node's key and the keyed hash of digits that name no account."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading

import pytest

from node_agent.keyed_hash import KEY_FILE, KeyedHash, SecretError, is_ref, load_or_create_key
from tests.conftest import ROOT
from tests.ivr.harness import write_config


def test_the_key_is_made_once_private_and_kept(tmp_path):
    key = load_or_create_key(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path / "data") == key  # the next start reads the same key
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY_FILE]  # no temporary file left
    a, b = KeyedHash.for_data_dir(tmp_path / "data"), KeyedHash.for_data_dir(tmp_path / "data")
    assert a.ref("6222009999") == b.ref("6222009999")  # correlated across restarts
    assert a.ref("6222009999") != a.ref("6222009998")
    assert KeyedHash.for_data_dir(tmp_path / "other").ref("6222009999") != a.ref("6222009999")  # keyed
    assert is_ref(a.ref("6222009999")) and not is_ref("6222009999")
    assert key.hex() not in repr(a)


def test_nodes_starting_at_the_same_moment_share_one_key(tmp_path):
    """The daemon and a `nodectl` started together: whoever links the key first wins, the other
    reads it; neither replaces it."""
    for attempt in range(5):
        data = tmp_path / f"d{attempt}"
        keys: list[bytes] = []
        barrier = threading.Barrier(8)

        def start(data=data, keys=keys, barrier=barrier) -> None:
            barrier.wait()
            keys.append(load_or_create_key(data))

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(keys) == 8 and len(set(keys)) == 1
        assert [p.name for p in data.iterdir()] == [KEY_FILE]


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"short"), "is damaged (5 bytes, not 32): restore it from a backup"),
    (lambda p: p.chmod(0o644), "can be read by others (mode 644): chmod 600"),
    (lambda p: (p.unlink(), p.mkdir()), "is not a regular file: move it aside"),
])
def test_a_bad_key_gets_a_clear_error_that_says_what_to_do(tmp_path, damage, message):
    load_or_create_key(tmp_path)
    damage(tmp_path / KEY_FILE)
    with pytest.raises(SecretError, match=re.escape(message)) as err:
        load_or_create_key(tmp_path)
    assert str(tmp_path / KEY_FILE) in str(err.value)


def test_an_unusable_data_directory_says_so(tmp_path):
    (tmp_path / "data").write_text("a file where the data directory belongs")
    with pytest.raises(SecretError, match="cannot create the node's key .*data directory must be writable"):
        load_or_create_key(tmp_path / "data")


def test_nodectl_reports_a_bad_key_without_a_traceback(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / KEY_FILE).write_bytes(os.urandom(7))
    os.chmod(data / KEY_FILE, 0o600)
    cfg = write_config(tmp_path, "socket://127.0.0.1:1")  # its data directory is tmp_path / "data"
    res = subprocess.run([sys.executable, "-m", "node_agent.cli", "-c", str(cfg), "alarms", "list"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr
    assert f"the node's key {data / KEY_FILE} is damaged" in res.stderr
