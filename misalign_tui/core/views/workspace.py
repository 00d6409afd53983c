"""The dashboard's view of the workspace: benchmarks, models, recent runs with their headline figures.

Read in worker threads, each with its own connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from misalign_tui.core.models.registry import ModelInfo, discover, list_models
from misalign_tui.core.store import BenchmarkInfo, Store
from misalign_tui.core.workspace import Workspace


@dataclass(frozen=True)
class BenchmarkRow:
    """A benchmark as the dashboard lists it. ``empty``: nothing to score (a build that published 0 pairs)."""

    info: BenchmarkInfo
    pairs: int

    @property
    def empty(self) -> bool:
        return self.info.responses == 0


@dataclass
class RunRow:
    id: int
    model: str
    benchmark: str
    method: str
    status: str
    items_done: int
    items_total: int
    started_at: str
    headline: float | None = None  # the method's headline figure (metrics.vocabulary.HEADLINE)
    headline_label: str = ""
    headline_ci: tuple[float, float] | None = None
    headline_n: int = 0
    headline_unit: str = ""
    trade_off_rate: float | None = None
    trade_off_ci: tuple[float, float] | None = None
    trade_off_n: int = 0
    trade_off_note: str | None = None
    judge_verdict: str | None = None  # judge runs: how good the judge is, in words (metrics/judge_quality.py)
    judge_figures: str = ""  # ... and its pairwise accuracy and ECE with their intervals


@dataclass
class WorkspaceSummary:
    home: str
    benchmarks: list[BenchmarkRow] = field(default_factory=list)
    models: list[ModelInfo] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)


def read_summary(workspace: Workspace, recent_runs: int = 20, headline_runs: int = 8) -> WorkspaceSummary:
    """Benchmarks, models and recent runs; the first ``headline_runs`` runs with their headline figures."""
    with Store(workspace.db_path) as store:
        runs = [
            RunRow(r["id"], r["model"], r["benchmark"], r["method"], r["status"], r["items_done"],
                   r["items_total"], r["started_at"])
            for r in store.conn.execute(
                """
                SELECT r.id, m.name AS model, b.name || ' v' || b.version AS benchmark, r.method, r.status,
                       r.items_done, r.items_total, r.started_at
                FROM runs r JOIN models m ON m.id = r.model_id JOIN benchmarks b ON b.id = r.benchmark_id
                ORDER BY r.id DESC LIMIT ?
                """, (recent_runs,))
        ]
        if headline_runs:
            discover(store, workspace.models_dir)  # GGUF files dropped into models/ since the last look
            for i, run in enumerate(runs[:headline_runs]):
                runs[i] = headline(store, run)
        return WorkspaceSummary(str(workspace.home), read_benchmarks(store), list_models(store), runs)


def read_benchmarks(store: Store) -> list[BenchmarkRow]:
    """Every benchmark with its pair count (an empty one is marked on the dashboard)."""
    pairs = dict(store.conn.execute(
        "SELECT p.benchmark_id, count(*) FROM pairs pa JOIN prompts p ON p.id = pa.prompt_id GROUP BY 1"))
    return [BenchmarkRow(b, pairs.get(b.id, 0)) for b in store.benchmarks()]


DASHBOARD_BOOTSTRAP = 300  # resamples for the judge verdict's AUROC interval here (the report uses 1000)
DASHBOARD_BOOTSTRAP_CELLS = 30_000_000  # fewer resamples (not under 100) for runs with very many items
DASHBOARD_VERDICTS = 4  # the most recent judge runs whose verdict the dashboard shows


def headline(store: Store, run: RunRow) -> RunRow:
    """The run's headline figure (the method's, from the metric vocabulary) and its trade-off rate."""
    from dataclasses import replace

    from misalign_tui.core import metrics
    from misalign_tui.core.metrics.vocabulary import headline as headline_metric

    if run.items_done == 0:
        return run
    from misalign_tui.core.metrics.profile import BOOTSTRAP_RESAMPLES

    key = headline_metric(run.method)  # AS gets its bootstrap interval: the report's resamples and seed
    overall = metrics.profile(store, run.id, bootstrap=BOOTSTRAP_RESAMPLES if key.key == "alignment_score" else 0)
    rep = metrics.trade_offs(store, run.id)
    row = overall[0] if overall else None
    return replace(run, headline=key.row_value(row) if row else None, headline_label=key.label,
                   headline_ci=key.row_ci(row) if row else None, headline_n=key.row_n(row) if row else 0,
                   headline_unit=key.unit, trade_off_rate=rep.rate, trade_off_ci=rep.ci, trade_off_n=rep.n_prompts,
                   trade_off_note=rep.reason)


def parameters_label(n: int | None) -> str:
    """A parameter count as people say it: 268M, 1.24B, 286k."""
    if not n:
        return "-"
    if n < 1000:
        return str(n)
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def size_label(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def device_label(m: ModelInfo) -> str:
    """Where the model runs, from its settings (models set --gpu-layers / the Models screen)."""
    if m.is_remote:
        return "remote"
    if m.n_gpu_layers is None:
        return "auto"
    if m.n_gpu_layers == 0:
        return "CPU"
    return "GPU (all)" if m.n_gpu_layers < 0 else f"GPU ({m.n_gpu_layers} layers)"


def with_verdicts(workspace: Workspace, summary: WorkspaceSummary) -> WorkspaceSummary:
    """The summary with the judge's quality in words for its most recent judge runs (metrics/judge_quality.py):
    read after the headlines, as a bootstrap over a large run takes seconds."""
    from dataclasses import replace

    from misalign_tui.core.metrics.judge_quality import quality_figures, run_judge_quality

    runs = list(summary.runs)
    wanted = [i for i, r in enumerate(runs) if r.method == "judge" and r.items_done][:DASHBOARD_VERDICTS]
    with Store(workspace.db_path) as store:
        for i in wanted:
            resamples = max(100, min(DASHBOARD_BOOTSTRAP, DASHBOARD_BOOTSTRAP_CELLS // max(1, runs[i].items_done)))
            quality = run_judge_quality(store, runs[i].id, bootstrap=resamples, detail=False)
            runs[i] = replace(runs[i], judge_verdict=quality.verdict if quality else None,
                              judge_figures=quality_figures(quality) if quality else "")
    return replace(summary, runs=runs)


def read_models(workspace: Workspace, rescan: bool = True) -> list:
    with Store(workspace.db_path) as store:
        if rescan:
            discover(store, workspace.models_dir)
        return list_models(store)


def quick_load_test(workspace: Workspace, model: str) -> str:
    """Load the model with its own settings through the engine, then time prompt processing and a short
    generation: what a user needs to choose GPU layers and threads."""
    import time

    from misalign_tui.core.inference.engine import Engine, EngineSettings
    from misalign_tui.core.models.registry import resolve_model

    with Store(workspace.db_path) as store:
        info = resolve_model(store, model, workspace.models_dir)
    started = time.perf_counter()
    settings = EngineSettings(n_ctx=512, n_gpu_layers=info.n_gpu_layers, n_threads=info.n_threads)
    with Engine(info.path or "", chat_template=info.effective_chat_template, settings=settings) as engine:
        load_s = time.perf_counter() - started
        prompt_rate = engine.prompt_processing_rate(128, repeats=1)
        t0 = time.perf_counter()
        gen = engine.generate(engine.format_user_turn("Say hello in five words."), max_tokens=24, temperature=0.0)
        gen_s = time.perf_counter() - t0
        return (f"{info.name} on {engine.device}, {engine.n_threads} threads\n"
                f"load {load_s:.2f} s · prompt {prompt_rate:,.0f} tokens/s · "
                f"generation {gen.tokens / gen_s if gen_s > 0 else 0:,.1f} tokens/s ({gen.tokens} tokens)")


def prepare_workspace(home: str | Path | None = None) -> Workspace:
    """The workspace the app opens: folders made, the database created and migrated, the taxonomy and (in a new
    workspace) the seed benchmark loaded, so a first user can profile at once without leaving the app."""
    from misalign_tui.core.io.native import load_seed_benchmark
    from misalign_tui.core.taxonomy import published_taxonomy
    from misalign_tui.core.workspace import open_workspace

    workspace = open_workspace(home).ensure()
    with Store(workspace.db_path) as store:
        if not store.conn.execute("SELECT 1 FROM domains LIMIT 1").fetchone():
            store.sync_taxonomy(published_taxonomy())
        if not store.conn.execute("SELECT 1 FROM benchmarks LIMIT 1").fetchone():
            load_seed_benchmark(store)
    return workspace


def shown_path(path: str | None, workspace: Workspace) -> str | None:
    """A model file's path as the app shows it: relative to the workspace when it lies inside (``models/x.gguf``)."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(workspace.home.resolve()))
    except ValueError:
        return path
