"""The EDA tools the reward stack runs, one small wrapper each.

A binary comes from its environment variable (e.g. ``$VERILATOR``) or ``PATH``; a missing one raises
:class:`ToolNotFound` with the fix. Versions are recorded with every result because area and timing
change with tool versions.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass


class ToolNotFound(RuntimeError):
    """A tool is not installed; the message says how to install it or which env var to set."""


@dataclass(frozen=True)
class Tool:
    name: str
    env_var: str
    executable: str
    install_hint: str
    version_args: tuple[str, ...] = ("--version",)

    def binary(self) -> str:
        """Absolute path of the binary; raises :class:`ToolNotFound`."""
        override = os.environ.get(self.env_var)
        found = find_binary(override or self.executable, os.environ.get("PATH"))
        if not found:
            where = f"${self.env_var}={override!r}" if override else f"{self.executable!r} on PATH"
            raise ToolNotFound(f"{self.name} not found ({where}): {self.install_hint} or set ${self.env_var}")
        return os.path.realpath(found) if override else found

    def available(self) -> bool:
        try:
            self.binary()
        except ToolNotFound:
            return False
        return True

    def version(self) -> str:
        return _version(self.binary(), self.version_args)

    def ro_binds(self) -> tuple[str, ...]:
        """Host paths the sandbox must expose for this binary (its install prefix when outside /usr)."""
        path = self.binary()
        if path.startswith("/usr/"):
            return ()
        prefix = os.path.dirname(os.path.dirname(path))
        return (prefix,)


@functools.lru_cache(maxsize=64)
def _found(name: str, path: str | None) -> str:
    found = shutil.which(name, path=path)
    if not found:
        raise LookupError(name)  # not cached: a tool installed later is found on the next call
    return found


def find_binary(name: str, path: str | None) -> str | None:
    """``shutil.which(name)`` on ``path`` (the caller's ``$PATH``), remembered per name and ``$PATH``:
    every job asks for its tools, and a search walks the whole ``$PATH``. A remembered binary that
    is gone (or no longer executable) is searched for again, as ``which`` would."""
    try:
        found = _found(name, path)
        if not os.access(found, os.X_OK):
            _found.cache_clear()
            found = _found(name, path)
        return found
    except LookupError:
        return None


@functools.cache
def _version(binary: str, args: tuple[str, ...]) -> str:
    try:
        proc = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolNotFound(f"{binary} did not report a version: {exc}") from exc
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


VERILATOR = Tool("verilator", "VERILATOR", "verilator", "install verilator>=5.0 (apt-get install verilator)")
IVERILOG = Tool(
    "iverilog", "IVERILOG", "iverilog", "install Icarus Verilog (apt-get install iverilog)", ("-V",)
)
VVP = Tool("vvp", "VVP", "vvp", "install Icarus Verilog (apt-get install iverilog)", ("-V",))
YOSYS = Tool("yosys", "YOSYS", "yosys", "install yosys (apt-get install yosys)", ("-V",))
STA = Tool("sta", "OPENSTA", "sta", "install OpenSTA (apt-get install opensta)", ("-version",))

TOOLS: dict[str, Tool] = {t.name: t for t in (VERILATOR, IVERILOG, VVP, YOSYS, STA)}

LIBERTY_DEFAULT = "/usr/share/qflow/tech/osu018/osu018_stdcells.lib"


def liberty_path() -> str:
    """The standard-cell liberty for PPA ($RTLFORGE_LIBERTY or the Debian OSU 0.18 file)."""
    path = os.environ.get("RTLFORGE_LIBERTY", LIBERTY_DEFAULT)
    if not os.path.isfile(path):
        raise ToolNotFound(
            f"liberty file {path} not found: run `make setup` (installs qflow-tech-osu018's liberty) "
            "or set $RTLFORGE_LIBERTY to a .lib file"
        )
    return path


def tool_versions() -> dict[str, str]:
    """Versions of every tool that is installed (missing ones are reported as 'missing')."""
    out = {}
    for name, tool in TOOLS.items():
        try:
            out[name] = tool.version()
        except ToolNotFound:
            out[name] = "missing"
    return out
