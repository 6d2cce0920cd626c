"""The campaign file as a pydantic v2 model: the single source of its schema.

Structural rules live here (types, ranges, unknown keys); rules that relate one
part of the file to another (a ``backend`` value naming a backend, placeholders
matching params) live in :mod:`llem_cli.campaign.checks`, which needs the
expanded plan.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from llem_cli.campaign.durations import parse_duration
from llem_cli.campaign.names import METRIC_NAMES, default_project

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(h|m|s|ms)?)+\s*$"},
    ],
    "description": "seconds, or a duration such as 90s, 5m, 1h30m",
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
"""A duration in seconds, written as ``90``, ``90s``, ``5m`` or ``1h30m``."""

Scalar = str | int | float | bool
"""A param value: what a grid axis lists and a placeholder substitutes."""


def _command_item(value: object) -> str:
    """Command items are strings; numbers become strings, anything else is refused."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        kind = {bool: "a boolean", type(None): "null"}.get(type(value), "a mapping or list")
        raise ValueError(f"command items must be strings, got {kind} (quote it)")
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("command items must be strings (quote it)")
    return value


_COMMAND_ITEM_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "number"}],
    "description": "an argv item; a number is turned into a string (booleans and null: quote it)",
}

CommandItem = Annotated[str, BeforeValidator(_command_item), WithJsonSchema(_COMMAND_ITEM_SCHEMA)]
"""A ``command`` (or probe) item: the published schema says what validate accepts."""


def _env_value(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise ValueError("environment values must be strings (quote it)")
    return str(value)


EnvValue = Annotated[str, BeforeValidator(_env_value)]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    # Defaults are spelled Field(default=...): type checkers (dataclass_transform) read only the
    # keyword, so with a positional default the field would look required to them.
    model_config = ConfigDict(extra="forbid", frozen=True)



#: a dotted path: segments of anything but dots and blanks, none empty
RESULT_PATH_PATTERN = r"^[^.\s]+(\.[^.\s]+)*$"

ResultPath = Annotated[
    str,
    Field(
        pattern=RESULT_PATH_PATTERN,
        description="a dotted path into result.json (performance.output_throughput); "
        "a number indexes a list (results.0.tokens)",
    ),
]
"""Where a value sits in an experiment's ``result.json``."""


class MetricFormula(_Strict):
    """A normalized metric the engine does not report as one number, computed from numbers it
    does report and from the configuration's params.

    The value is the product of every ``multiply`` value (paths into result.json) and every
    ``params`` value, divided by the ``divide_by`` value. Only products and one division:
    enough for "output tokens = prompts x output length of a fixed-length workload" and "per
    second = that / elapsed time", and little enough that a campaign shows at a glance how a
    number was made. The record says the value was computed (``measurement.computed``).
    """

    # the schema says what _has_a_product checks: a formula has something to multiply
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["multiply"]}, {"required": ["params"]}]}
    )

    multiply: list[ResultPath] = Field(
        default_factory=list, description="paths into result.json whose values are multiplied"
    )
    params: list[Annotated[str, Field(pattern=IDENT_PATTERN)]] = Field(
        default_factory=list,
        description="numeric params of the configuration, multiplied in (the workload's "
        "fixed sizes, such as num_prompts and output_len)",
    )
    divide_by: ResultPath | None = Field(
        default=None, description="a path into result.json whose value divides the product"
    )

    @model_validator(mode="after")
    def _has_a_product(self) -> MetricFormula:
        if not self.multiply and not self.params:
            raise ValueError(
                "a computed metric needs multiply (paths into result.json) or params "
                "(param names), or both"
            )
        return self


def _metric_branch(value: object) -> str | None:
    """Which form a metric's source is written in: text is a path, a mapping a formula.

    Choosing the branch up front gives one error about the form the user wrote, not one per
    form tried; a value of neither kind gets the discriminator's own message.
    """
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        return "dict"
    return None


MetricSource = Annotated[
    Annotated[ResultPath, Tag("str")] | Annotated[MetricFormula, Tag("dict")],
    Discriminator(
        _metric_branch,
        custom_error_type="metric_source",
        custom_error_message="expected a dotted path into result.json, or a mapping "
        "with multiply, params and divide_by",
    ),
]
"""A normalized metric's source: a path into result.json, or a formula."""

_METRIC_HELP = "; null: not mapped"


class Metrics(_Strict):
    """``backends.<name>.metrics``: llem's normalized names mapped to where this engine's
    ``result.json`` holds them, so engines that name one quantity differently compare
    (DESIGN.md, "Metrics across engines"). A name left out (or null) is not mapped."""

    output_tokens: MetricSource | None = Field(
        default=None, description="tokens generated, all requests together" + _METRIC_HELP
    )
    input_tokens: MetricSource | None = Field(
        default=None, description="prompt tokens, all requests together" + _METRIC_HELP
    )
    output_tokens_per_s: MetricSource | None = Field(
        default=None, description="generated tokens per second (not prompt + output)" + _METRIC_HELP
    )
    requests_per_s: MetricSource | None = Field(
        default=None, description="requests completed per second" + _METRIC_HELP
    )
    ttft_ms: MetricSource | None = Field(
        default=None, description="median time to first token, milliseconds" + _METRIC_HELP
    )
    itl_ms: MetricSource | None = Field(
        default=None, description="median inter-token latency, milliseconds" + _METRIC_HELP
    )

    def mapped(self) -> dict[str, str | MetricFormula]:
        """The names this backend maps, in :data:`METRIC_NAMES` order, with their sources."""
        sources = {name: getattr(self, name) for name in METRIC_NAMES}
        return {name: source for name, source in sources.items() if source is not None}


def _gpus_branch(value: object) -> str | None:
    """``gpus`` is a count (a whole number) or a list of host GPU indexes; deciding up front
    gives one error about the form written (``[0, -1]``: the -1), not one per form tried."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, int) and not isinstance(value, bool):
        return "count"
    return None


GpuSpec = Annotated[
    Annotated[Annotated[int, Field(ge=1, le=1024)], Tag("count")]
    | Annotated[list[Annotated[int, Field(ge=0)]], Tag("list")],
    Discriminator(
        _gpus_branch,
        custom_error_type="gpus",
        custom_error_message="expected a GPU count (gpus: 2) or a list of host GPU indexes "
        "(gpus: [0, 1])",
    ),
]
"""A backend's ``gpus``: how many GPUs an experiment takes, or which host GPUs it pins."""


class Backend(_Strict):
    """How to run an experiment on one backend (a compose service)."""

    service: str | None = Field(
        default=None, description="compose service; default: the backend name"
    )
    command: list[CommandItem] = Field(
        ..., min_length=1, description="argv run with docker compose exec; {param} placeholders"
    )
    gpus: GpuSpec | None = Field(
        None,
        description="GPUs per experiment: a count k (llem picks k free GPUs; default 1 with "
        "lanes, else every GPU llem may use), or a list of host GPU indexes that pins them",
    )
    env: dict[Annotated[str, Field(pattern=IDENT_PATTERN)], EnvValue] = Field(default_factory=dict)
    keepalive: bool = Field(
        default=True, description="replace the service command with sleep infinity"
    )
    loads_model: bool | None = Field(
        default=None,
        description="the command loads the model itself, so each energy window includes "
        "loading it (recorded as measurement.includes_model_load); default true, false for a "
        "serving backend (its client talks to a server already loaded)",
    )
    serve: list[CommandItem] | None = Field(
        default=None,
        min_length=1,
        description="a serving backend: the server argv, run as the container's main process "
        "instead of the keep-alive; params it uses are server params (one server start per "
        "server configuration); command is then the client, one exec per experiment",
    )
    ready: list[CommandItem] | None = Field(
        default=None,
        min_length=1,
        description="exec'd after every server start until it exits 0 (e.g. curl -sf "
        "http://localhost:8000/health)",
    )
    ready_timeout: Duration = Field(
        default=900.0,
        gt=0,
        description="a server not ready by then failed to start (counted as a restart)",
    )
    metrics: Metrics = Field(
        default_factory=Metrics,
        description="normalized metric name -> dotted path into result.json, or a formula",
    )

    @property
    def serving(self) -> bool:
        """A serving backend: a server per server configuration, clients as experiments."""
        return self.serve is not None

    @property
    def includes_model_load(self) -> bool:
        """Whether an experiment's window includes loading the model (``loads_model``)."""
        return self.loads_model if self.loads_model is not None else not self.serving

    @property
    def pinned_gpus(self) -> list[int] | None:
        """The host GPU indexes a list ``gpus`` pins (None: a count, or not given)."""
        return list(self.gpus) if isinstance(self.gpus, list) else None

    @property
    def gpu_count(self) -> int | None:
        """How many GPUs one experiment takes: the count, the pinned list's length, or None."""
        if isinstance(self.gpus, list):
            return len(self.gpus)
        return self.gpus


class Thermal(_Strict):
    """Wait before each experiment until the host GPUs are cool enough."""

    max_temp_c: float = Field(..., gt=0, le=120)
    max_wait: Duration = 600.0
    power_within_idle_pct: float | None = Field(default=None, gt=0, le=100)


class Execution(_Strict):
    """How the expanded experiments are ordered and paced."""

    cycles: int = Field(default=1, ge=1, le=10_000)
    order: Literal["interleaved", "shuffled", "grouped"] = "interleaved"
    seed: int = 0
    timeout: Duration = Field(default=1800.0, gt=0)
    retries: int = Field(default=0, ge=0, le=100)
    gap: Duration = 0.0
    cycle_gap: Duration = 0.0
    thermal: Thermal | None = None
    idle_baseline: Duration | None = None
    prune_on_oom: list[Annotated[str, Field(pattern=IDENT_PATTERN)]] = Field(default_factory=list)
    lanes: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(
        default=1,
        description="experiments at once, each on its own GPUs; auto: as many as the GPUs "
        "allow (overridden by llem run --lanes)",
    )


class Health(_Strict):
    """When to probe the GPUs inside a container, and when to give up restarting it."""

    probe: Literal["nvidia-smi"] | Annotated[list[CommandItem], Field(min_length=1)] = "nvidia-smi"
    every: int = Field(default=1, ge=0)
    max_memory_used_pct: float = Field(default=90.0, gt=0, le=100)
    max_memory_growth_pct: float = Field(
        default=5.0,
        gt=0,
        le=100,
        description="serving backends: GPU memory used above the level right after the server "
        "was ready, in percentage points of total memory, that means a restart "
        "(max_memory_used_pct does not apply: a server holds most of the memory by design)",
    )
    max_restarts: int = Field(default=3, ge=0, le=1000)
    restart_backoff: Duration = 5.0
    probe_timeout: Duration = Field(
        default=60.0,
        gt=0,
        description="a probe that has not answered by then counts as a hung GPU: restart",
    )


class Results(_Strict):
    """Where runs go and how ``llem results`` normalises energy (the long form of ``results``)."""

    dir: str = "results"
    per: list[Annotated[str, Field(pattern=IDENT_PATTERN)]] = Field(
        default_factory=list,
        description="count metrics (from result.json) to report energy per, e.g. [tokens]; "
        "default: output_tokens if reported, else tokens if reported",
    )


ParamMap = dict[Annotated[str, Field(pattern=IDENT_PATTERN)], Scalar]
AxisMap = dict[
    Annotated[str, Field(pattern=IDENT_PATTERN)], Annotated[list[Scalar], Field(min_length=1)]
]


class GpuSettingsAxes(_Strict):
    """``gpu_settings``: host GPU settings llem applies through NVML before each experiment.

    Each list is an axis that multiplies every configuration, like a grid axis; the name
    becomes a param. ``null`` leaves the setting as it is.
    """

    power_limit_w: list[Annotated[int | float, Field(gt=0, le=10_000)] | None] | None = Field(
        default=None,
        min_length=1,
        description="power limits in watts (nvmlDeviceSetPowerManagementLimit); null: as is",
    )
    sm_clock_mhz: list[Annotated[int, Field(gt=0, le=100_000)] | None] | None = Field(
        default=None,
        min_length=1,
        description="locked SM clocks in MHz (nvmlDeviceSetGpuLockedClocks); null: unlocked",
    )
    mem_clock_mhz: list[Annotated[int, Field(gt=0, le=100_000)] | None] | None = Field(
        default=None,
        min_length=1,
        description="locked memory clocks in MHz (nvmlDeviceSetMemoryLockedClocks); "
        "null: unlocked",
    )

    def axes(self) -> dict[str, list[Any]]:
        """The axes given, name -> values, in the order written."""
        return {
            name: list(values)
            for name in ("power_limit_w", "sm_clock_mhz", "mem_clock_mhz")
            if (values := getattr(self, name)) is not None
        }


class Campaign(_Strict):
    """A campaign file (docs/design.md §3.3)."""

    name: str = Field(..., pattern=NAME_PATTERN, max_length=63)
    compose: str | Annotated[list[str], Field(min_length=1)]
    project: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=63)
    backends: Annotated[
        dict[Annotated[str, Field(pattern=NAME_PATTERN)], Backend], Field(min_length=1)
    ]
    grid: AxisMap | None = None
    per_backend: dict[str, AxisMap] = Field(default_factory=dict)
    experiments: list[ParamMap] = Field(default_factory=list)
    exclude: list[ParamMap] = Field(default_factory=list)
    gpu_settings: GpuSettingsAxes | None = Field(
        default=None,
        description="axes llem applies to the host GPUs through NVML before each experiment "
        "(root or the capability needed); restored when the run ends, even after a crash",
    )
    execution: Execution = Field(default_factory=Execution)
    health: Health = Field(default_factory=Health)
    results: str | Results = Field(
        default="results", description="directory for runs, relative to this file; or {dir, per}"
    )

    @field_validator("compose")
    @classmethod
    def _compose_as_list(cls, value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    @property
    def compose_files(self) -> list[str]:
        """The compose paths, always as a list (relative to the campaign file)."""
        return list(self.compose) if isinstance(self.compose, list) else [self.compose]

    @property
    def project_name(self) -> str:
        """The compose project: given, or ``llem-<name>``."""
        return self.project or default_project(self.name)

    @property
    def results_path(self) -> str:
        """The results directory as written (relative to the campaign file)."""
        return self.results if isinstance(self.results, str) else self.results.dir

    @property
    def energy_per(self) -> list[str]:
        """Count metrics that ``llem results`` divides energy by."""
        return [] if isinstance(self.results, str) else list(self.results.per)

    def keepalive_services(self) -> dict[str, bool]:
        """Each compose service used -> whether its container idles on the keep-alive command
        (a serving backend's runs its server instead, set per server configuration)."""
        return {
            self.service_of(name): backend.keepalive and not backend.serving
            for name, backend in self.backends.items()
        }

    def service_of(self, backend: str) -> str:
        """The compose service a backend runs in."""
        return self.backends[backend].service or backend
