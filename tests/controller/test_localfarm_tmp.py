"""The local agents' temp folder: private to this user, and cleaned up after a controller that
was killed (kill -9) the next time one starts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from controller.farm import localfarm
from controller.farm.localfarm import (
    OWNER_FILE,
    WORKDIR_PREFIX,
    LocalFarm,
    local_workdir,
    remove_stale_workdirs,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(root: Path, name: str, pid: int | None) -> Path:
    path = root / f"{WORKDIR_PREFIX}{name}"
    path.mkdir(mode=0o700)
    (path / "agent.token").write_text("secret")
    (path / "cache").mkdir()
    if pid is not None:
        (path / OWNER_FILE).write_text(f"{pid}\n")
    return path


def test_stale_folder_removed_live_and_unknown_kept(tmp_path: Path) -> None:
    stale = _leftover(tmp_path, "stale", _dead_pid())
    live = _leftover(tmp_path, "live", os.getpid())
    no_owner = _leftover(tmp_path, "noowner", None)
    other = tmp_path / "something-else"
    other.mkdir()
    (other / OWNER_FILE).write_text(f"{_dead_pid()}\n")

    assert remove_stale_workdirs(tmp_path) == [stale]
    assert not stale.exists()
    assert live.is_dir() and no_owner.is_dir() and other.is_dir()


def test_other_users_folder_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = _leftover(tmp_path, "stale", _dead_pid())
    monkeypatch.setattr(localfarm.os, "getuid", lambda: os.stat(stale).st_uid + 1)
    assert remove_stale_workdirs(tmp_path) == []
    assert stale.is_dir()


def test_symlink_not_followed(tmp_path: Path) -> None:
    target = _leftover(tmp_path, "target-of-link", _dead_pid())
    (tmp_path / "elsewhere").mkdir()
    moved = target.rename(tmp_path / "elsewhere" / "dir")
    (tmp_path / f"{WORKDIR_PREFIX}link").symlink_to(moved)
    assert remove_stale_workdirs(tmp_path) == []
    assert moved.is_dir()


def test_new_folder_private_and_owned_and_leftovers_cleaned(tmp_path: Path) -> None:
    stale = _leftover(tmp_path, "stale", _dead_pid())
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        with local_workdir(tmp_path) as workdir, LocalFarm(workdir) as farm:
            assert not stale.exists()
            assert workdir.name.startswith(WORKDIR_PREFIX)
            assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
            assert stat.S_IMODE(farm.token_path.stat().st_mode) == 0o600
            assert (workdir / OWNER_FILE).read_text().strip() == str(os.getpid())
            # A concurrent start keeps this live folder.
            assert remove_stale_workdirs(tmp_path) == []
    finally:
        os.umask(old_umask)
    assert not workdir.exists()
