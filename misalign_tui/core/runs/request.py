"""What a run is asked to do: ``RunSpec`` as a user names it (CLI flags, the Run screen's form), resolved against
the workspace into a ``RunRequest`` of registry rows that ``run_evaluation`` turns into a run.

Both faces build their request here (``resolve_request``), and both resume a stored run through
``misalign_tui.core.runs.identity.resume_request``, so a run started on one face continues on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from misalign_tui.core.errors import UserError
from misalign_tui.core.inference.engine import GEN_BATCH, EngineSettings
from misalign_tui.core.inference.judge_templates import TEMPLATE_VERSION, judge_templates
from misalign_tui.core.inference.remote import RemoteSettings
from misalign_tui.core.inference.requests import Sampling
from misalign_tui.core.io.native import SEED_BENCHMARK, load_seed_benchmark
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.metrics.vocabulary import METHODS
from misalign_tui.core.models.registry import ModelInfo, resolve_model
from misalign_tui.core.store import BenchmarkInfo, Store

DEFAULT_TEMPLATES = 3  # paraphrased judge templates per item (the paper averaged 3 runs)


@dataclass
class RunRequest:
    """A run in terms of registry rows; ``run_evaluation`` creates or resumes the run with this identity."""

    model: ModelInfo
    benchmark: BenchmarkInfo
    method: str | None = None  # None: judge with a chat template, preference without
    judge_model: ModelInfo | None = None  # generate only; default: the model itself
    filters: Filters = field(default_factory=Filters)
    limit: int | None = None
    templates: int = DEFAULT_TEMPLATES
    settings: EngineSettings = field(default_factory=EngineSettings)
    sampling: Sampling = field(default_factory=Sampling)
    remote: RemoteSettings | None = None  # remote models: concurrency, retries (not part of the run's identity)
    template_version: str = TEMPLATE_VERSION
    run_id: int | None = None  # resume exactly this run (set by resume_request)


@dataclass(frozen=True)
class RunResult:
    run_id: int
    status: str
    items_total: int
    items_done: int
    resumed: bool
    judge_run_id: int | None = None


@dataclass(frozen=True)
class RunSpec:
    """A run as a user names it: a model spec (default, a name, a path, a sha256 prefix), a benchmark name,
    filters in the one grammar, and the engine and sampling settings."""

    model: str = "default"
    method: str | None = None  # None or "auto": judge with a chat template, else preference
    judge_model: str | None = None
    benchmark: str = SEED_BENCHMARK
    filters: Filters = field(default_factory=Filters)
    limit: int | None = None
    templates: int = DEFAULT_TEMPLATES
    n_ctx: int = 4096
    n_gpu_layers: int | None = None
    n_threads: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    concurrency: int | None = None
    template_version: str = TEMPLATE_VERSION  # judge-v1 repeats the templates of earlier runs
    gen_batch: int = GEN_BATCH  # generate: answers sampled together (engine.generate_many)


def default_method(model: ModelInfo) -> str:
    return "judge" if model.effective_chat_template else "preference"


def resolve_request(store: Store, models_dir: Path, spec: RunSpec) -> RunRequest:
    """The request for ``spec``: the embedded seed benchmark is loaded when named, models are resolved, and a
    judge model implies the generate method."""
    method = None if spec.method in (None, "auto") else spec.method
    if method is not None and method not in METHODS:
        raise UserError(f"--method {method}: use one of {', '.join(METHODS)}")
    if spec.judge_model and method not in (None, "generate"):
        raise UserError("--judge-model only applies to --method generate")
    if spec.benchmark == SEED_BENCHMARK:
        load_seed_benchmark(store)
    bench = store.benchmark(spec.benchmark)
    model = resolve_model(store, spec.model, models_dir)
    judge = resolve_model(store, spec.judge_model, models_dir) if spec.judge_model else None
    if judge is not None:
        method = "generate"
    spec.filters.domain_ids(store)  # unknown domain names fail here, with a hint about quoting
    judge_templates(spec.templates, spec.template_version)  # one line for an unknown version
    return RunRequest(model, bench, method, judge, spec.filters, spec.limit, spec.templates,
                      EngineSettings(n_ctx=spec.n_ctx, n_gpu_layers=spec.n_gpu_layers, n_threads=spec.n_threads,
                                     gen_batch=spec.gen_batch),
                      spec.sampling, RemoteSettings(concurrency=spec.concurrency) if spec.concurrency else None,
                      spec.template_version)
