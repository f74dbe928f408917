"""The unshare level's file system, built inside its new namespaces before the child starts.

`unshare` runs `python -I -S -B -c <this file's source> SPEC ARGV...` as the first process of
new mount, pid and network namespaces (`levels.wrap`). It makes every mount read-only; then
gives the run a private sized tmpfs /tmp (the work directory lives there), a /dev holding
only the harmless devices (as bwrap's `--dev`), and empty read-only home directories, the
interpreter bound back when it lives in one; and finally execs ARGV with no_new_privs set.
When the child will not drop to a throwaway uid (not root: a user namespace), the bounding
set is emptied too, so the exec'd child holds no capability and cannot undo a mount.

Standard library only, like child.py: it runs in the child's interpreter with `-I -S`,
before anything else, and never imports mlx_repair. Any failure ends it before ARGV runs:
a candidate never starts under a half-built sandbox.
"""

import ctypes
import json
import os
import re
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 32, 1024, 2048, 4096, 8192, 16384
MS_NOSYMFOLLOW, MS_PRIVATE, MS_RELATIME = 256, 1 << 18, 1 << 21
# Per-mount options a remount must repeat: a user namespace may not clear them (locked).
KEPT_OPTIONS = {
    b"nosuid": MS_NOSUID, b"nodev": MS_NODEV, b"noexec": MS_NOEXEC, b"nosymfollow": MS_NOSYMFOLLOW,
    b"noatime": MS_NOATIME, b"nodiratime": MS_NODIRATIME, b"relatime": MS_RELATIME,
}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
ST_RDONLY = 1
_libc = ctypes.CDLL(None, use_errno=True)


def main(argv: list[str]) -> None:
    """SPEC (JSON: tmp_mb, homes, prefixes, drop_caps) ARGV..."""
    spec = json.loads(argv[1])
    os.umask(0o022)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    make_everything_read_only()
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['tmp_mb']}m,mode=1777")
    hide_homes(spec["homes"], spec["prefixes"])
    minimal_dev(spec["tmp_mb"])
    lock(spec["drop_caps"])
    os.execv(argv[2], argv[2:])


def make_everything_read_only() -> None:
    """Remount every mount read-only (per mount, as bwrap does: there is no recursive
    remount in util-linux here). A mount its path no longer reaches (covered by another)
    cannot be remounted, nor reached by the candidate; any mount that a path reaches and
    that is still writable afterwards stops the run."""
    for target, options in mount_table():
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options.split(b","):
            flags |= KEPT_OPTIONS.get(option, 0)
        try:
            mount(None, target, None, flags)
        except OSError:
            pass
    for target, _ in mount_table():
        if os.path.exists(target) and not os.statvfs(target).f_flag & ST_RDONLY:
            raise SystemExit(f"mounts: {os.fsdecode(target)} is still writable")


def mount_table() -> list[tuple[bytes, bytes]]:
    """(mount point, per-mount options) of every mount here, from /proc/self/mountinfo."""
    table = []
    with open("/proc/self/mountinfo", "rb") as lines:
        for line in lines:
            fields = line.split()
            table.append((_unescape(fields[4]), fields[5]))
    return table


def _unescape(path: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), path)


def hide_homes(homes: list[str], prefixes: list[str]) -> None:
    """An empty read-only tmpfs over each home directory; the interpreter and any other
    path the child must read, when it lives in one, is bound back read-only at its own
    path (kept aside in /tmp meanwhile)."""
    homes = [h for h in homes if not any(h.startswith(o.rstrip("/") + "/") for o in homes)]
    inside = [p for p in prefixes if any(p.startswith(h.rstrip("/") + "/") for h in homes)]
    for number, prefix in enumerate(inside):
        os.mkdir(f"/tmp/.keep{number}")
        mount(prefix, f"/tmp/.keep{number}", None, MS_BIND | MS_REC)
    for home in homes:
        mount("tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for number, prefix in enumerate(inside):
        os.makedirs(prefix)
        mount(f"/tmp/.keep{number}", prefix, None, MS_MOVE)
        os.rmdir(f"/tmp/.keep{number}")
    for home in homes:
        mount(None, home, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def minimal_dev(size_mb: int) -> None:
    """/dev as a private tmpfs holding only the harmless devices, bound from the host's,
    so that no disk or terminal of the host can be opened (built in /tmp, then moved)."""
    staging = "/tmp/.dev"
    os.mkdir(staging)
    mount("tmpfs", staging, "tmpfs", MS_NOSUID, f"size={size_mb}m,mode=0755")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{staging}/{name}", "w").close()
            mount(f"/dev/{name}", f"{staging}/{name}", None, MS_BIND)
    for name, target in DEVICE_LINKS.items():
        os.symlink(target, f"{staging}/{name}")
    os.mkdir(f"{staging}/shm", 0o1777)
    os.chmod(f"{staging}/shm", 0o1777)
    mount(staging, "/dev", None, MS_MOVE)
    os.rmdir(staging)


def lock(drop_caps: bool) -> None:
    """no_new_privs: no setuid program or file capability gives power back after exec.
    With `drop_caps`, also empty the bounding set: the exec'd child then starts with no
    capability at all (a root child keeps its own, to drop to a throwaway uid)."""
    _call(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if drop_caps:
        with open("/proc/sys/kernel/cap_last_cap") as last:
            for cap in range(int(last.read()) + 1):
                _call(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")


def mount(source, target, fstype, flags: int, data: str | None = None) -> None:
    result = _libc.mount(_c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(data))
    _call(result, f"mount {os.fsdecode(target)}")


def _c(text):
    """A C string (None: NULL)."""
    return None if text is None else os.fsencode(text)


def _call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


if __name__ == "__main__":
    main(sys.argv)
