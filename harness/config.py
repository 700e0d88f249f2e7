"""Structured configs: the schema every Hydra config is checked against.

Hydra composes plain YAML from ``harness/conf``; :func:`validate` merges each part onto these
dataclasses so a misspelt key or a wrong type fails early, naming the key and the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from harness.errors import ConfigError, did_you_mean


@dataclass
class GenParamsConfig:
    """Generation parameters: every one goes into the cache key."""

    width: int = 512
    """Image width in pixels."""
    height: int = 512
    """Image height in pixels."""
    steps: int | None = None
    """Denoising steps (local models); None lets the generator pick its default."""
    guidance: float | None = None
    """Classifier-free guidance scale; None for the family default."""
    scheduler: str | None = None
    """Scheduler class name (diffusers), e.g. EulerDiscreteScheduler; None keeps the pipeline's."""
    negative_prompt: str | None = None
    """Default negative prompt; a prompt's own negative prompt wins."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Generator-specific parameters (quality, style, output format ...), also keyed."""


@dataclass
class ModelConfig:
    """One entry of the ``models`` group (conf/models/<name>.yaml)."""

    _target_: str = "???"
    """Generator class that runs this model."""
    label: str = "???"
    """Human name shown in reports (never shown to raters)."""
    model_id: str = "???"
    """Hub id, local folder, or the provider's model name."""
    revision: str | None = None
    """Hub revision / provider model version; pin it for reproducible runs."""
    family: str = ""
    """Architecture family (sd15, sdxl, sd3, flux, ...), for grouping in reports."""
    params: GenParamsConfig = field(default_factory=GenParamsConfig)
    """Generation parameters, part of every request."""
    options: dict[str, Any] = field(default_factory=dict)
    """How to run it (device, dtype, offload, build recipe ...): not part of the cache key."""
    batch_size: int = 1
    """Requests per generate call."""
    price_per_image: float | None = None
    """List price in USD per image for APIs; None for self-hosted (costed from GPU time)."""
    untrained: bool = False
    """Random weights: every report labels such a model as untrained."""
    notes: str = ""
    """Free text for reports (licence, caveats)."""
    provider: str | None = None
    """Who makes or serves the model (shown in reports); None: unknown."""
    open_weights: bool | None = None
    """Whether the weights can be downloaded; None: unknown."""
    licence: str | None = None
    """Licence of the weights, or the terms of the API; None: unknown."""
    release_date: str | None = None
    """Public release, ISO (YYYY-MM-DD or YYYY-MM) as the maker states it; None: unknown."""
    parameters: str | None = None
    """Parameter count as the maker states it (e.g. "8B"); None: unknown or not published."""


@dataclass
class MetricConfig:
    """One entry of the ``metrics`` group (conf/metrics/<name>.yaml)."""

    _target_: str = "???"
    """Metric class."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Every setting that changes the number; stored with each value."""


@dataclass
class SuiteConfig:
    """The ``suite`` group: where prompts come from and which of them to use."""

    name: str = "???"
    """Short name, used in run ids and under reports/."""
    file: str = "???"
    """Prompt file: absolute, relative to the working directory, or a built-in suite file name."""
    format: str = "harness"
    """harness (own YAML/JSONL) | partiprompts | drawbench | geneval | t2i-compbench."""
    description: str = ""
    """One line for reports."""
    primary_metric: str | None = None
    """The metric (a stored name: ``attributes.all``, ``ocr.word_f1``) that ranks models on this
    suite when there are too few human votes (``report.headline=auto``); None: the composite."""
    tags: list[str] = field(default_factory=list)
    """Keep prompts carrying any of these tags (empty: all)."""
    exclude_tags: list[str] = field(default_factory=list)
    """Drop prompts carrying any of these tags."""
    per_tag: int | None = None
    """Stratified sample: at most this many prompts per tag (seeded)."""
    stratify_prefix: str = ""
    """Only tags starting with this prefix define strata (e.g. 'category:'); empty: all tags."""
    limit: int | None = None
    """Keep at most this many prompts (after filters and stratification)."""
    seed: int = 0
    """Seed for the stratified sample."""


@dataclass
class StoreConfig:
    """The ``store`` group."""

    root: str = "store"
    """Store directory: SQLite database, images by hash, run logs."""


@dataclass
class ExecutorConfig:
    """The ``executor`` group."""

    _target_: str = "harness.runner.local.LocalExecutor"
    """Executor class."""
    options: dict[str, Any] = field(default_factory=dict)
    """Executor-specific settings."""


@dataclass
class RunConfig:
    name: str | None = None
    """Run id; None derives '<suite>-<hash of the plan>' so re-running the same command resumes."""
    retry_errors: bool = True
    """Re-attempt units whose last attempt failed with an error (refusals are never retried)."""
    max_cost_usd: float | None = None
    """Most this run may spend on closed APIs, in USD, counting what its stored records already
    cost; None: no cap. A run whose estimate passes it is refused before anything is sent, and
    a run stops cleanly (resumable) before the batch that would pass it. With a cap set, a
    model with no known price is refused (set models.<name>.price_per_image)."""


@dataclass
class ReportConfig:
    dir: str = "reports"
    """Reports go to <dir>/<suite>/<run>/; <dir>/<suite>/latest points at the newest."""
    ci: float = 0.95
    """Confidence level for metric intervals."""
    baseline: str | None = None
    """Model (config name) whose Elo-like preference rating is fixed at 1000; None: the mean is 1000."""
    bootstrap: int = 1000
    """Bootstrap resamples for the preference and agreement intervals."""
    seed: int = 0
    """Seed of those bootstraps (the same store and seed give the same report bytes)."""
    both_bad: str = "tie"
    """How a "both bad" vote counts: tie (half a win each) | drop (left out)."""
    include_excluded_raters: bool = False
    """Also count votes of raters marked excluded (normally left out of every table)."""
    gallery_prompts: int = 4
    """Prompts in the HTML gallery and the leaderboard page (every model's image side by side)."""
    html: bool = True
    """Write the self-contained leaderboard.html as well."""
    headline: str = "auto"
    """What ranks the models: auto (human preference with at least min_votes votes, else the
    suite's primary_metric, else the composite) | preference | composite | a metric name."""
    min_votes: int = 30
    """Counted human votes from which headline=auto ranks by human preference."""
    metric_ranks: bool = False
    """Also give every metric column a rank range (ties shown as "1–2")."""
    preference_cluster: str = "prompt"
    """What the preference bootstrap resamples: prompt | rater | prompt+rater | vote."""


@dataclass
class ExportConfig:
    format: str = "parquet"
    """parquet | csv | jsonl."""
    path: str | None = None
    """Output file; None writes <store>/exports/<run>.<format>."""


@dataclass
class CostConfig:
    gpu_name: str = "H100"
    """GPU the self-hosted price refers to (a label for the plot)."""
    gpu_usd_per_hour: float | None = 2.5
    """Rental price of one GPU per hour, USD; null: self-hosted models go unpriced in the reports
    (their price says so) and ``harness cost`` asks for one."""
    utilisation: float = 0.6
    """Share of paid GPU time spent generating."""
    min_gpus: int = 1
    """GPUs kept running even at low volume."""
    api_prices: dict[str, float] = field(default_factory=dict)
    """Extra API prices to compare with (label -> USD per image); the run's API models and, when
    it has none, reference entries of the dated price table are always included."""


@dataclass
class CheckConfig:
    """``harness check`` and the checks ``harness run`` makes before anything is sent."""

    max_price_age_days: int = 180
    """A price row older than this many days (its ``as_of``) is reported as stale (a warning)."""
    online: bool = True
    """``harness check`` asks each provider whether it lists the model (free metadata calls
    only); false: only the offline checks (key present, price, estimate)."""


@dataclass
class QuestionGenConfig:
    """``harness suite questions``: the LLM that writes DSG-style questions for prompts lacking them."""

    provider: str = "openai"
    """Who serves the model: openai (Chat Completions; any compatible server via base_url)."""
    model: str = "gpt-5.4-mini"
    """Model name; the installed openai SDK's list says which are current or shut down."""
    base_url: str | None = None
    """API root (None: OpenAI's); e.g. http://127.0.0.1:8000/v1 for a local compatible server."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (the key is never written anywhere)."""
    workers: int = 4
    """Calls in flight at once."""
    timeout_s: float = 120.0
    """Seconds to wait for one answer."""
    max_retries: int = 2
    """The SDK's retries of connection errors, 429 and 5xx, with backoff."""


COMMANDS = ("run", "generate", "score", "report", "export", "list", "cost", "check")


@dataclass
class RootConfig:
    """Top level of conf/config.yaml (groups are validated separately)."""

    command: str = "run"
    samples: int = 1
    seed: int = 0
    progress: bool = True
    run: RunConfig = field(default_factory=RunConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    question_gen: QuestionGenConfig = field(default_factory=QuestionGenConfig)


GROUPS = {"suite": SuiteConfig, "store": StoreConfig, "executor": ExecutorConfig}
MULTI_GROUPS = {"models": ModelConfig, "metrics": MetricConfig}


def check_section(schema: type, node: Any, where: str) -> Any:
    """Merge one config node onto its schema, turning OmegaConf errors into teaching ones."""
    if not isinstance(node, (DictConfig, dict)):
        raise ConfigError(f"{where}: expected a mapping of settings, got {node!r}.")
    valid = [f.name for f in fields(schema)]
    keys = list(node.keys())
    for k in keys:
        if k not in valid:
            raise ConfigError(f"{where}: unknown key {k!r}.{did_you_mean(str(k), valid)}")
    for f in fields(schema):
        sub = node.get(f.name) if f.name in keys else None
        if sub is not None and is_dataclass(f.default_factory() if callable(f.default_factory) else None):
            check_section(type(f.default_factory()), sub, f"{where}.{f.name}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except (ValidationError, ConfigKeyError) as e:
        key = getattr(e, "full_key", "") or ""
        raise ConfigError(f"{where}.{key}: {e.msg if hasattr(e, 'msg') else e}") from None
    missing = OmegaConf.missing_keys(merged)
    if missing:
        raise ConfigError(f"{where}: required setting(s) missing: {', '.join(sorted(missing))}.")
    return merged


def validate(cfg: DictConfig) -> DictConfig:
    """Check the composed config against the schemas; return it with defaults filled in."""
    top = {k: v for k, v in cfg.items() if k not in GROUPS and k not in MULTI_GROUPS
           and k not in ("hydra", "experiment")}
    check_section(RootConfig, OmegaConf.create(top), "config")
    out = OmegaConf.to_container(cfg, resolve=True)
    out = OmegaConf.create(out)
    for g, schema in GROUPS.items():
        if g not in cfg:
            raise ConfigError(f"config: group {g!r} is not selected; add '{g}=<name>'.")
        out[g] = check_section(schema, cfg[g], g)
    for g, schema in MULTI_GROUPS.items():
        node = cfg.get(g) or {}
        if not isinstance(node, (DictConfig, dict)):
            raise ConfigError(f"{g}: expected named entries (select with '{g}=[a,b]').")
        for name, sub in node.items():
            out[g][name] = check_section(schema, sub, f"{g}.{name}")
    if out.command not in COMMANDS:
        raise ConfigError(f"command {out.command!r} unknown.{did_you_mean(out.command, COMMANDS)}")
    if out.samples < 1:
        raise ConfigError(f"samples: must be >= 1, got {out.samples}.")
    clusters = ("prompt", "rater", "prompt+rater", "vote")
    if out.report.preference_cluster not in clusters:
        raise ConfigError(f"report.preference_cluster: {out.report.preference_cluster!r} is not one of "
                          f"these.{did_you_mean(str(out.report.preference_cluster), clusters)}")
    if out.report.min_votes < 0:
        raise ConfigError(f"report.min_votes: must be >= 0, got {out.report.min_votes}.")
    return out


def as_list(node: Any) -> list:
    if isinstance(node, (ListConfig, list, tuple)):
        return list(node)
    return [node]
