"""The reliability chart of judge runs: observed share of misaligned responses against mean P(misaligned) per bin
of P (metrics/judge_quality.py), one line per model, beside the diagonal a calibrated judge would follow.

Data arrives in ExploreData from a worker; nothing here queries the store.
"""

from __future__ import annotations

from textual_plotext import PlotextPlot

from misalign_tui.core.views.explore import ExploreData


class ReliabilityChart(PlotextPlot):
    def replot(self, data: ExploreData) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        curves = {m: [b for b in bins if b.n and b.mean_p is not None and b.observed is not None]
                  for m, bins in data.reliability.items()}
        curves = {m: bins for m, bins in curves.items() if bins}
        if not curves:
            plt.title("Reliability (judge runs)")
            plt.text(data.note or "no judge run with results", 50, 50, alignment="center")
            plt.xlim(0, 100)
            plt.ylim(0, 100)
            self.refresh()
            return
        plt.title("Reliability: % misaligned (y) vs mean P(misaligned) % (x), per bin")
        plt.plot([0, 100], [0, 100], color="gray", label="calibrated")
        for model, bins in curves.items():
            plt.plot([100 * (b.mean_p or 0.0) for b in bins], [100 * (b.observed or 0.0) for b in bins],
                     marker="dot", label=model if len(model) <= 14 else model[:13] + "…")
        plt.xlim(0, 100)
        plt.ylim(0, 100)
        self.refresh()
