"""io: atomic writes replace only regular files, leave no temp files, and are durable."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sparsebench import io
from sparsebench.errors import SparsebenchError
from sparsebench.io import atomic_write, atomic_write_text, check_writable

NOT_REGULAR = "exists and is not a regular file; refusing to replace it"
DEAD_PID = 4_194_305  # above PID_MAX_LIMIT (2**22): no process can have it

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX file types")


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_writes_new_file_with_umask_mode(tmp_path):
    path = tmp_path / "out.json"
    old = os.umask(0o027)
    try:
        atomic_write_text(path, "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _temps(tmp_path) == []


def test_existing_file_needs_force(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(SparsebenchError, match="already exists; pass --force to overwrite it"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    atomic_write_text(path, "new", force=True)
    assert path.read_text() == "new"


def test_missing_parent_and_directory_target_are_refused(tmp_path):
    with pytest.raises(SparsebenchError, match="does not exist"):
        check_writable(tmp_path / "nope" / "out.json", force=True)
    with pytest.raises(SparsebenchError, match="is a directory"):
        check_writable(tmp_path, force=True)


@posix_only
@pytest.mark.parametrize("force", [False, True])
def test_symlink_target_is_refused_and_left_alone(tmp_path, force):
    target = tmp_path / "real.json"
    target.write_text("precious")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(SparsebenchError, match=NOT_REGULAR):
        atomic_write_text(link, "new", force=force)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "precious"
    assert _temps(tmp_path) == []


@posix_only
def test_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "missing.json")
    with pytest.raises(SparsebenchError, match=NOT_REGULAR):
        atomic_write_text(link, "new", force=True)
    assert link.is_symlink() and not (tmp_path / "missing.json").exists()


@posix_only
def test_symlink_to_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "d")
    with pytest.raises(SparsebenchError, match=NOT_REGULAR):
        check_writable(link, force=True)


@posix_only
def test_fifo_is_refused_even_with_force(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SparsebenchError, match=NOT_REGULAR):
        atomic_write_text(fifo, "new", force=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@posix_only
def test_socket_is_refused_even_with_force(tmp_path):
    path = tmp_path / "s.sock"
    if len(str(path)) > 100:
        pytest.skip("tmp path too long for a unix socket")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(SparsebenchError, match=NOT_REGULAR):
            check_writable(path, force=True)


@pytest.fixture
def no_real_writes(monkeypatch):
    """Fail instead of creating or renaming anything: a broken implementation run as root
    must not replace /dev/null."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"atomic_write tried to write: {args} {kwargs}")

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(io.os, "replace", refuse)


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_device_node_is_refused_even_with_force(device, no_real_writes):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    before = os.lstat(device)
    with pytest.raises(SparsebenchError, match=f"^{device} {NOT_REGULAR}$"):
        atomic_write_text(device, "new", force=True)
    after = os.lstat(device)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_failing_write_keeps_target_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def fail(handle):
        handle.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, fail, force=True)
    assert path.read_text() == "old"
    assert _temps(tmp_path) == []


def test_keyboard_interrupt_leaves_no_temp(tmp_path):
    def interrupt(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.json", interrupt)
    assert list(tmp_path.iterdir()) == []


def test_target_created_while_writing_is_not_overwritten(tmp_path):
    path = tmp_path / "out.json"

    def race(handle):
        handle.write(b"mine")
        path.write_text("theirs")

    with pytest.raises(SparsebenchError, match="already exists"):
        atomic_write(path, race)
    assert path.read_text() == "theirs"
    assert _temps(tmp_path) == []


@posix_only
def test_target_turned_into_symlink_while_writing_is_not_replaced(tmp_path):
    path, elsewhere = tmp_path / "out.json", tmp_path / "elsewhere.json"
    path.write_text("old")

    def race(handle):
        handle.write(b"new")
        path.unlink()
        path.symlink_to(elsewhere)

    with pytest.raises(SparsebenchError, match=NOT_REGULAR):
        atomic_write(path, race, force=True)
    assert path.is_symlink() and not elsewhere.exists()
    assert _temps(tmp_path) == []


def test_temp_and_directory_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(src).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "out.json", "data")
    assert events == [("fsync", "file"), ("replace", b"data"), ("fsync", "dir")]


def test_directory_fsync_failure_is_ignored(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError("EINVAL")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_text(tmp_path / "out.json", "data")
    assert (tmp_path / "out.json").read_text() == "data"


def test_temp_name_carries_the_writer_pid(tmp_path):
    seen = []
    atomic_write(tmp_path / "out.json", lambda f: seen.extend(os.listdir(tmp_path)))
    assert len(seen) == 1
    assert seen[0].startswith(f".out.json.{os.getpid()}.") and seen[0].endswith(".tmp")


def test_stale_temp_of_dead_writer_is_removed_live_one_kept(tmp_path):
    dead = tmp_path / f".out.json.{DEAD_PID}.abcdefgh.tmp"
    live = tmp_path / f".out.json.{os.getpid()}.zyxwvuts.tmp"
    other_target = tmp_path / f".other.json.{DEAD_PID}.abcdefgh.tmp"
    for path in (dead, live, other_target):
        path.write_text("partial")
    atomic_write_text(tmp_path / "out.json", "new")
    assert not dead.exists()
    assert live.exists() and other_target.exists()
    assert (tmp_path / "out.json").read_text() == "new"


def test_stale_temp_is_removed_when_overwriting(tmp_path):
    (tmp_path / "out.json").write_text("old")
    dead = tmp_path / f".out.json.{DEAD_PID}.abcdefgh.tmp"
    dead.write_text("partial")
    atomic_write_text(tmp_path / "out.json", "new", force=True)
    assert not dead.exists()


def test_temp_of_a_reused_pid_is_removed(tmp_path):
    # pid 1 lives; a temp last written before pid 1 started cannot be that process's own
    reused = tmp_path / ".out.json.1.abcdefgh.tmp"
    reused.write_text("partial")
    os.utime(reused, (0, 0))
    assert io.remove_stale_temps(tmp_path / "out.json") == [reused]


def test_legacy_temp_is_removed_only_when_old(tmp_path):
    fresh = tmp_path / ".out.json.abcdefgh.tmp"
    old = tmp_path / ".out.json.hgfedcba.tmp"
    fresh.write_text("partial")
    old.write_text("partial")
    hours_ago = time.time() - 2 * io.LEGACY_TEMP_STALE_S
    os.utime(old, (hours_ago, hours_ago))
    assert io.remove_stale_temps(tmp_path / "out.json") == [old]
    assert fresh.exists()


@posix_only
def test_stale_temp_that_is_not_a_regular_file_is_left(tmp_path):
    odd = tmp_path / f".out.json.{DEAD_PID}.abcdefgh.tmp"
    odd.mkdir()
    assert io.remove_stale_temps(tmp_path / "out.json") == []
    assert odd.is_dir()


@posix_only
def test_sigterm_while_writing_removes_the_temp_and_still_kills(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from sparsebench.io import atomic_write

        def slow(handle):
            handle.write(b"partial")
            print("writing", flush=True)
            time.sleep(60)

        atomic_write({str(tmp_path / "out.json")!r}, slow)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert len(_temps(tmp_path)) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    assert list(tmp_path.iterdir()) == []


def test_sigterm_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    atomic_write_text(tmp_path / "out.json", "x")
    assert signal.getsignal(signal.SIGTERM) is before
