"""The macOS sandbox (`sandbox-exec`, Seatbelt): the profile a candidate runs under, and
the command line that applies it.

The profile denies everything it does not allow, and allows what a Python child needs:
reading and mapping the interpreter and the system libraries, running programs from the
system and the interpreter, forking, writing only in its work directory (and /dev/null),
the sysctls and the few system services the C library asks for at start-up. It never
allows the network (unix sockets included), hard links, the home directory, or a signal
or process inspection outside its own sandbox: a candidate cannot reach the user's other
processes, nor its parent, nor have launchd start an unsandboxed helper for it.

The paths that vary (the work directory, the interpreter) are parameters given with
`-D NAME=value` and read by `(param "NAME")`: the profile is a constant and never
contains a path, so no path can change its meaning. They are given resolved, since
Seatbelt matches the real path of a file (/var is /private/var). Written from Apple's
Sandbox Profile Language and the seatbelt profiles of projects that sandbox code on
macOS (Chromium, Codex CLI, Anthropic's sandbox-runtime); verified on a Mac by the steps
in docs/macos_verification.md.
"""

from __future__ import annotations

import os
import sys

SANDBOX_EXEC = "/usr/bin/sandbox-exec"

PROFILE = """\
(version 1)

; Nothing is allowed unless a rule below allows it. The last matching rule wins.
(deny default)

; The interpreter and the system: read, map as code, run.
(allow file-read* file-map-executable
  (literal (param "PYTHON"))
  (subpath (param "PYTHON_PREFIX"))
  (subpath "/System")
  (subpath "/usr/lib")
  (subpath "/bin")
  (subpath "/usr/bin")
  (subpath "/opt/homebrew/Cellar"))
(allow process-exec
  (literal (param "PYTHON"))
  (subpath (param "PYTHON_PREFIX"))
  (subpath "/bin")
  (subpath "/usr/bin"))
(allow process-fork)

; Read-only system data: time zones, /etc, Homebrew's links to its libraries.
(allow file-read*
  (subpath "/usr/share")
  (subpath "/private/etc")
  (subpath "/private/var/db/timezone")
  (subpath "/opt/homebrew/opt"))

; Path lookups may stat any directory and the links at the top of the file system;
; reading a directory's entries or any file outside the rules above stays denied.
(allow file-read-metadata
  (vnode-type DIRECTORY)
  (literal "/etc")
  (literal "/tmp")
  (literal "/var"))

; The work directory (HOME and TMPDIR are inside it) is the only place it may write.
(allow file-read* file-write* (subpath (param "WORKDIR")))

; Devices a program opens on its own: the bit buckets, randomness, its own descriptors,
; and the two the C library and dyld probe (automounts, DTrace probes).
(allow file-read*
  (literal "/dev/null")
  (literal "/dev/zero")
  (literal "/dev/random")
  (literal "/dev/urandom")
  (literal "/dev/autofs_nowait")
  (literal "/dev/dtracehelper")
  (subpath "/dev/fd"))
(allow file-write-data
  (literal "/dev/null")
  (literal "/dev/zero")
  (subpath "/dev/fd"))

; Other processes: only those in this same sandbox (the candidate and what it started).
(allow signal (target same-sandbox))
(allow process-info* (target same-sandbox))

; What the C library and Python read at start-up: the machine, the OS, the limits.
(allow sysctl-read
  (sysctl-name-prefix "hw.")
  (sysctl-name-prefix "machdep.cpu.")
  (sysctl-name "kern.argmax")
  (sysctl-name "kern.boottime")
  (sysctl-name "kern.hostname")
  (sysctl-name "kern.maxfilesperproc")
  (sysctl-name "kern.maxproc")
  (sysctl-name "kern.maxprocperuid")
  (sysctl-name "kern.ngroups")
  (sysctl-name "kern.osproductversion")
  (sysctl-name "kern.osrelease")
  (sysctl-name "kern.ostype")
  (sysctl-name "kern.osvariant_status")
  (sysctl-name "kern.osversion")
  (sysctl-name "kern.secure_kernel")
  (sysctl-name "kern.usrstack64")
  (sysctl-name "kern.version")
  (sysctl-name "sysctl.proc_cputype")
  (sysctl-name "sysctl.proc_translated")
  (sysctl-name "vm.loadavg"))

; System services: user names (pwd), notifications (time zone changes), logging. No
; other: launchd would start an unsandboxed helper for a program that reached one.
(allow mach-lookup
  (global-name "com.apple.system.opendirectoryd.libinfo")
  (global-name "com.apple.system.notification_center")
  (global-name "com.apple.system.logger")
  (global-name "com.apple.logd"))

; Whatever is allowed above: no network (unix sockets included), no hard links (a link
; would give a file outside the work directory a name inside it).
(deny network*)
(deny file-link)
"""


def parameters(workdir: str) -> dict[str, str]:
    """The values of the profile's `(param ...)`, every path resolved."""
    return {
        "WORKDIR": os.path.realpath(workdir),
        "PYTHON": os.path.realpath(sys.executable),
        "PYTHON_PREFIX": os.path.realpath(sys.base_prefix),
    }


def command(argv: list[str], workdir: str) -> list[str]:
    """`argv` under the profile: sandbox-exec by its absolute path (never one found on
    PATH), each parameter its own argument."""
    defines = [arg for name, value in parameters(workdir).items() for arg in ("-D", f"{name}={value}")]
    return [SANDBOX_EXEC, *defines, "-p", PROFILE, *argv]
