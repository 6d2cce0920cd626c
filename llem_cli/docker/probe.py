"""The GPU probe inside a container: the nvidia-smi query and its parsing.

One exec per check prints one CSV row per GPU. Values nvidia-smi cannot give come bracketed
(``[N/A]``, ``[Not Supported]``, ``[GPU is lost]``) and are kept as ``None``, never 0: a missing
reading must not look like an idle GPU. nvidia-smi's own exit codes name the broken layer (driver,
NVML library, a lost GPU) and are reported as such, because the caller reacts differently to each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

FULL_FIELDS: tuple[str, ...] = (
    "index",
    "uuid",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "utilization.gpu",
    "power.draw",
)
MINIMAL_FIELDS: tuple[str, ...] = ("index", "memory.used", "memory.total")


def query_argv(fields: Sequence[str] = FULL_FIELDS) -> list[str]:
    """The nvidia-smi argv of the container contract, docs/design.md §3.5 (or ``fields``)."""
    return ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


ProbeStatus = Literal[
    "ok",
    "driver_not_loaded",  # nvidia-smi exit 9
    "nvml_missing",  # exit 12
    "gpu_lost",  # exit 15, or "GPU is lost" in the output
    "invalid_field",  # exit 2 even with the minimal field set
    "not_runnable",  # 126/127: no probe command in the container
    "timeout",
    "container_died",  # the exec could not reach a running container
    "unparseable",  # exit 0 but output that is not the CSV
    "failed",  # any other non-zero exit
]

#: nvidia-smi exit code -> status (from ``nvidia-smi -h``, "RETURN VALUE")
EXIT_STATUS: dict[int, ProbeStatus] = {
    9: "driver_not_loaded",
    12: "nvml_missing",
    15: "gpu_lost",
}

STATUS_TEXT: dict[str, str] = {
    "driver_not_loaded": "NVIDIA driver not loaded (nvidia-smi exit 9)",
    "nvml_missing": "NVML shared library not found (nvidia-smi exit 12)",
    "gpu_lost": "a GPU is lost (nvidia-smi exit 15); reboot the host to recover it",
    "invalid_field": "nvidia-smi rejects the query fields (exit 2)",
    "not_runnable": "the probe command is not runnable in the container",
    "timeout": "the probe timed out",
    "container_died": "the container is not running",
    "unparseable": "the probe's output is not the expected CSV",
    "failed": "the probe failed",
}


@dataclass(frozen=True)
class GpuStatus:
    """One GPU as the probe saw it; ``None`` is "not reported", never 0.

    Units: memory in MiB, temperature in degrees C, utilization in percent, power in watts.
    """

    index: int | None
    uuid: str | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: float | None = None
    utilization_pct: float | None = None
    power_w: float | None = None

    @property
    def memory_used_pct(self) -> float | None:
        """Used memory as a percentage of total, only when both are present and total > 0."""
        if self.memory_used_mib is None or not self.memory_total_mib:
            return None
        return 100.0 * self.memory_used_mib / self.memory_total_mib


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: a status, the GPUs parsed (if any) and what went wrong."""

    status: ProbeStatus
    gpus: tuple[GpuStatus, ...] = ()
    exit_code: int | None = None
    detail: str = ""
    fields: tuple[str, ...] = FULL_FIELDS
    argv: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        """True when the probe answered with parsed rows."""
        return self.status == "ok"

    def select(self, indices: Sequence[int] | None) -> tuple[GpuStatus, ...]:
        """The GPUs with these indices (``None``: all)."""
        if indices is None:
            return self.gpus
        wanted = set(indices)
        return tuple(g for g in self.gpus if g.index in wanted)

    def max_memory_used_pct(self, indices: Sequence[int] | None = None) -> float | None:
        """The highest memory use among the selected GPUs that report it (``None``: none do)."""
        values = [g.memory_used_pct for g in self.select(indices)]
        present = [v for v in values if v is not None]
        return max(present) if present else None

    def over_threshold(self, max_pct: float, indices: Sequence[int] | None = None) -> bool:
        """True when some selected GPU already uses more than ``max_pct`` percent of memory."""
        worst = self.max_memory_used_pct(indices)
        return worst is not None and worst > max_pct

    def message(self) -> str:
        """One line for the journal and the terminal."""
        if self.ok:
            return f"{len(self.gpus)} GPU(s) ok"
        text = STATUS_TEXT.get(self.status, self.status)
        return f"{text}: {self.detail}" if self.detail else text


class ProbeParseError(ValueError):
    """The probe's output is not the CSV of the query."""


def parse_value(text: str) -> str | None:
    """A CSV cell: stripped, bracketed (``[N/A]``, ``[Not Supported]``) or ``N/A`` -> None."""
    text = text.strip()
    if not text or (text.startswith("[") and text.endswith("]")):
        return None
    if text.upper() in ("N/A", "NOT SUPPORTED"):
        return None
    return text


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def parse_number(text: str) -> float | None:
    """A numeric cell; tolerates units left in (``1024 MiB``, ``70.5 W``); missing -> None."""
    value = parse_value(text)
    if value is None:
        return None
    match = _NUMBER.match(value)
    if not match:
        raise ProbeParseError(f"not a number: {text.strip()!r}")
    return float(match.group(0))


def parse_csv(text: str, fields: Sequence[str] = FULL_FIELDS) -> tuple[GpuStatus, ...]:
    """Parse one row per GPU (noheader). A row with the minimal field count is read as minimal.

    Raises :class:`ProbeParseError` for rows of another width or non-numeric numbers.
    """
    fields = tuple(fields)
    gpus: list[GpuStatus] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        row_fields = fields
        if len(cells) != len(fields) and len(cells) == len(MINIMAL_FIELDS):
            row_fields = MINIMAL_FIELDS
        if len(cells) != len(row_fields):
            raise ProbeParseError(
                f"line {lineno}: {len(cells)} values, expected {len(fields)}: {line.strip()!r}"
            )
        values = dict(zip(row_fields, cells, strict=True))
        index = parse_number(values.get("index", ""))
        gpus.append(
            GpuStatus(
                index=int(index) if index is not None else None,
                uuid=parse_value(values["uuid"]) if "uuid" in values else None,
                memory_used_mib=parse_number(values.get("memory.used", "")),
                memory_total_mib=parse_number(values.get("memory.total", "")),
                temperature_c=parse_number(values.get("temperature.gpu", "")),
                utilization_pct=parse_number(values.get("utilization.gpu", "")),
                power_w=parse_number(values.get("power.draw", "")),
            )
        )
    return tuple(gpus)


def interpret(
    exit_code: int,
    stdout: str,
    stderr: str = "",
    *,
    fields: Sequence[str] = FULL_FIELDS,
    timed_out: bool = False,
) -> ProbeResult:
    """Turn one probe exec's result into a :class:`ProbeResult` (pure; the caller retries)."""
    fields = tuple(fields)
    output = (stdout + "\n" + stderr).strip()
    detail = _short(output)
    if timed_out:
        return ProbeResult("timeout", exit_code=exit_code, detail=detail, fields=fields)
    if "GPU is lost" in output:
        return ProbeResult("gpu_lost", exit_code=exit_code, detail=detail, fields=fields)
    if exit_code in EXIT_STATUS:
        status = EXIT_STATUS[exit_code]
        return ProbeResult(status, exit_code=exit_code, detail=detail, fields=fields)
    if exit_code == 2:  # "a supplied argument or flag is invalid", e.g. an unknown field
        return ProbeResult("invalid_field", exit_code=exit_code, detail=detail, fields=fields)
    if exit_code in (126, 127):
        return ProbeResult("not_runnable", exit_code=exit_code, detail=detail, fields=fields)
    if exit_code != 0:
        return ProbeResult("failed", exit_code=exit_code, detail=detail, fields=fields)
    try:
        gpus = parse_csv(stdout, fields)
    except ProbeParseError as exc:
        return ProbeResult("unparseable", exit_code=0, detail=str(exc), fields=fields)
    if not gpus:
        return ProbeResult("unparseable", exit_code=0, detail="no GPU rows", fields=fields)
    return ProbeResult("ok", gpus=gpus, exit_code=0, fields=fields)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
