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
from misalign_tui.core.inference.judge_templates import POLARITIES, TEMPLATE_VERSION, judge_templates
from misalign_tui.core.inference.remote import RemoteSettings
from misalign_tui.core.inference.requests import Sampling
from misalign_tui.core.io.native import SEED_BENCHMARK, load_embedded
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.metrics.vocabulary import METHODS
from misalign_tui.core.models.registry import ModelInfo, resolve_model
from misalign_tui.core.store import BenchmarkInfo, Store

DEFAULT_TEMPLATES = 3  # paraphrased judge templates per item (the paper averaged 3 runs)
NORMALIZATIONS = ("none", "pmi")  # preference: plain mean log-likelihood, or minus it under a neutral context
# --normalize pmi: the neutral context is an empty user turn, so a response's score under it is its prior as an
# answer to anything (surface-form competition, Holtzman et al. 2021)
NEUTRAL_PROMPT = ""
SPLITS = ("scored", "calibration")  # the items a run scores (runs/calibration.py)
MAX_SHOTS = 16  # demonstrations a judge run may show (the calibration split's demonstration pool)


@dataclass(frozen=True)
class Protocol:
    """How a judge or preference run asks (docs/measures.md, "How good the judge is"). The defaults are the
    paper's zero-shot protocol; a run records only what differs from them, so older runs keep their identity.

    - ``shots``: K few-shot demonstrations from the benchmark's calibration split (never scored in the run).
    - ``calibrate``: contextual calibration — P(Yes) on a content-free response divided out before normalising.
    - ``polarity``: ``harm`` (the paper's question), ``inverted`` (its twins: "Yes" means aligned), ``balanced``.
    - ``normalize``: preference — ``pmi`` subtracts each response's mean log-likelihood under a neutral context.
    - ``split``: ``scored`` (every item; with shots, all but the calibration split) or ``calibration`` (the
      calibration split without the demonstrations' prompts: where settings are chosen).
    """

    shots: int = 0
    calibrate: bool = False
    polarity: str = "harm"
    normalize: str = "none"
    split: str = "scored"

    def check(self, method: str) -> None:
        """One line for a protocol the method cannot use."""
        if not 0 <= self.shots <= MAX_SHOTS:
            raise UserError(f"--shots {self.shots}: must be between 0 and {MAX_SHOTS}")
        if self.polarity not in POLARITIES:
            raise UserError(f"--polarity {self.polarity}: use one of {', '.join(POLARITIES)}")
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"--normalize {self.normalize}: use one of {', '.join(NORMALIZATIONS)}")
        if self.split not in SPLITS:
            raise UserError(f"split {self.split}: use one of {', '.join(SPLITS)}")
        judge_only = [name for name, on in (("--shots", self.shots), ("--calibrate", self.calibrate),
                                            ("--polarity", self.polarity != "harm")) if on]
        if method != "judge" and judge_only:
            raise UserError(f"{judge_only[0]} only applies to --method judge")
        if method != "preference" and self.normalize != "none":
            raise UserError("--normalize only applies to --method preference")
        if method not in ("judge", "preference") and self.split != "scored":
            raise UserError("the calibration split only applies to the judge and preference methods")

    @property
    def uses_split(self) -> bool:
        return self.shots > 0 or self.split == "calibration"

    def describe(self, method: str = "judge") -> str:
        """Short words for the protocol ("zero-shot", "4-shot, calibrated, balanced"; preference: "mean
        log-likelihood" or "PMI")."""
        if method == "preference":
            parts = ["PMI" if self.normalize == "pmi" else "mean log-likelihood"]
            if self.split == "calibration":
                parts.append("on the calibration split")
            return ", ".join(parts)
        parts = [f"{self.shots}-shot" if self.shots else "zero-shot"]
        if self.calibrate:
            parts.append("calibrated")
        if self.polarity != "harm":
            parts.append(self.polarity)
        if self.split == "calibration":
            parts.append("on the calibration split")
        return ", ".join(parts)


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
    protocol: Protocol = field(default_factory=Protocol)


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
    protocol: Protocol = field(default_factory=Protocol)
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
    load_embedded(store, spec.benchmark.partition("@")[0])  # an embedded benchmark is loaded when first named
    bench = store.benchmark(spec.benchmark)
    model = resolve_model(store, spec.model, models_dir)
    judge = resolve_model(store, spec.judge_model, models_dir) if spec.judge_model else None
    if judge is not None:
        method = "generate"
    spec.filters.domain_ids(store)  # unknown domain names fail here, with a hint about quoting
    judge_templates(spec.templates, spec.template_version)  # one line for an unknown version
    spec.protocol.check(method or default_method(model))
    return RunRequest(model, bench, method, judge, spec.filters, spec.limit, spec.templates,
                      EngineSettings(n_ctx=spec.n_ctx, n_gpu_layers=spec.n_gpu_layers, n_threads=spec.n_threads,
                                     gen_batch=spec.gen_batch),
                      spec.sampling, RemoteSettings(concurrency=spec.concurrency) if spec.concurrency else None,
                      spec.template_version, protocol=spec.protocol)
