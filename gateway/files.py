"""Files a configuration names (passwords, tokens, certificates): there and readable by the service
user; and the state directory: writable by it.

Checked before anything starts, by the process that will read them: under systemd ``heatgw check``
runs as the unit's ``User=``, so ``os.access`` answers for the user the gateway runs as, and a
file readable by root only is found by the check instead of by the first reconnect.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path


def unreadable(path: Path) -> str | None:
    """Why the service cannot read ``path`` (``cannot read /x: ...``), or None if it can."""
    try:
        info = path.stat()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return f"cannot read {path}: it is a directory, name the file in it"
    if not stat.S_ISREG(info.st_mode):
        return f"cannot read {path}: not a regular file"
    if not os.access(path, os.R_OK):
        return (f"cannot read {path}: not readable by user {_user(os.getuid())} (mode {stat.S_IMODE(info.st_mode):04o}, "
                f"owner {_user(info.st_uid)}); the service runs as this user: give it read access (e.g. group heatgw, "
                "mode 0640)")
    return None


def unwritable_directory(path: Path) -> str | None:
    """Why the service cannot keep its files in directory ``path`` (created with its parents when
    missing), or None if it can: it needs to create, write and rename files there."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    try:
        info = existing.stat()
    except OSError as exc:
        return f"cannot use {path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"cannot use {path}: {existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        made = "" if existing == path else f" ({path.relative_to(existing)} would be created there)"
        return (f"cannot write in {existing}{made}: not writable by user {_user(os.getuid())} (mode "
                f"{stat.S_IMODE(info.st_mode):04o}, owner {_user(info.st_uid)}); the service keeps its outbox, alarm "
                "states and the controller's memory there (under systemd: StateDirectory=)")
    return None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
