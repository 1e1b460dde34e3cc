"""How much memory there is, and a clear error when something would not fit (no torch here: data
readers use it before anything is allocated)."""

from __future__ import annotations

import os

from .errors import VaelabError


def available_memory() -> int:
    """Bytes the process may still allocate: MemAvailable (Linux), else the physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def require_host(needed: float, what: str, fix: str, free: int | None = None, where: str | None = None) -> None:
    """Raise a VaelabError when `needed` bytes exceed 90 % of the memory available."""
    free = available_memory() if free is None else free
    where = where or f"the {human(free)} of memory available"
    if needed > 0.9 * free:
        raise VaelabError(f"{what} needs about {human(needed)}, more than {where}; {fix}")
