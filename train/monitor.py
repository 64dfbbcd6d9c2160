"""Run monitoring: metrics as JSON lines (and TensorBoard), a progress bar, the best strategies, curves.

``RUN_DIR/metrics.jsonl`` gets one JSON object per logged step, flushed at once, so a crash
loses nothing already logged. A resumed run appends to the same file; :func:`read_metrics`
keeps the last record of each step, so steps redone after a resume are not counted twice.
The best strategies go to ``RUN_DIR/best/best-1.py`` (best first) with their scores in a
header comment, and ``RUN_DIR/best/index.json``. :func:`plot_run` draws ``RUN_DIR/curves.png``.

Metric names the headline and the plot read (the trainer logs these; others are kept as is):
``reward_mean`` (and ``reward_std``/``reward_min``/``reward_max``), ``compliance``,
``max_tile`` (best of the step), ``mean_max_tile``, ``score_mean``/``score_max``, ``kl``,
``zero_variance_frac`` (share of groups whose rewards are all equal).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from sandbox.text import safe_text  # best-program headers hold figures of program runs

__all__ = ["RunLogger", "read_metrics", "read_warm_start", "plot_run", "draw_run", "read_best", "moving_average", "METRICS_FILE", "BEST_DIR",
           "HEADLINE"]

METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"
PLOT_FILE = "curves.png"

# Progress-bar label -> metric names looked up in order (first one present wins), so the bar
# stays useful if the trainer names a figure slightly differently.
# The game's progress metric (2048: max_tile) joins as "best" when the logger knows it.
HEADLINE: dict[str, tuple[str, ...]] = {
    "reward": ("reward_mean", "reward/mean", "reward"),
    "comply": ("compliance", "compliance_rate", "compliant"),
    "kl": ("kl", "kl_mean"),
}
_ZERO_VAR_KEYS = ("zero_variance_frac", "frac_zero_variance", "zero_std_frac", "frac_zero_std")
# Share of zero-variance groups above which there is little learning signal left.
ZERO_VARIANCE_WARN = 0.5


def _plain(value: Any) -> Any:
    """A JSON-ready copy: numpy/torch scalars to numbers, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return _plain(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _first(metrics: Mapping[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        if metrics.get(name) is not None:
            return metrics[name]
    return None


def _tensorboard_writer(run_dir: Path, wanted: bool | None) -> Any:
    """A SummaryWriter into RUN_DIR/tensorboard, unless ``wanted`` is False or TensorBoard is missing.

    TensorBoard comes with the ``train`` extra; installed without it, the run says so in one line
    and logs to metrics.jsonl alone (``use_tensorboard=False`` turns it off without a word).
    """
    if wanted is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed (torch raises ImportError or ModuleNotFoundError)
        print(f"train: TensorBoard is not installed (pip install tensorboard); logging to {METRICS_FILE} only",
              file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


class RunLogger:
    """Logs a run's metrics, shows its progress and keeps its best strategies.

    ``log(step, ...)`` takes the 0-based index of the step just finished (as the trainer counts);
    ``initial_step`` is the number of steps already done (a resumed run's checkpoint step).
    """

    def __init__(self, run_dir: str | os.PathLike, total_steps: int, use_tensorboard: bool | None = None,
                 *, initial_step: int = 0, top_k: int = 5, progress: bool | None = None,
                 metric: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.metric = metric  # the game's progress metric, shown as "best" on the progress bar
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.total_steps = int(total_steps)
        self.top_k = int(top_k)
        self._file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        self._tb = _tensorboard_writer(self.run_dir, use_tensorboard)
        self._start = time.time()
        self._warned_low_signal = False
        self._best = read_best(self.run_dir)  # a resumed run keeps competing with its earlier best
        self._bar = None
        if progress is None:
            progress = True
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total_steps, initial=int(initial_step), desc="train",
                             unit="step", dynamic_ncols=True)
        self._done = int(initial_step)

    # --- metrics ---------------------------------------------------------------------

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict:
        """Append one step's metrics to metrics.jsonl (flushed), TensorBoard and the progress bar; return the record."""
        record = {"step": int(step), "time": round(time.time() - self._start, 3)}
        record.update(_plain(dict(metrics)))
        record["step"] = int(step)
        self._file.write(json.dumps(record, sort_keys=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, int(step))
            self._tb.flush()
        self._update_bar(int(step), record)
        self._check_signal(int(step), record)
        return record

    def log_warm_start(self, index: int, metrics: Mapping[str, Any]) -> dict:
        """Append one warm-start round's figures to metrics.jsonl as a record keyed ``warm_start_round`` (no step).

        :func:`read_metrics` (the GRPO curves) skips these records; :func:`read_warm_start` reads them.
        """
        record = {"warm_start_round": int(index), "time": round(time.time() - self._start, 3)}
        record.update(_plain(dict(metrics)))
        self._file.write(json.dumps(record, sort_keys=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "warm_start_round":
                    self._tb.add_scalar(key, value, int(index))
            self._tb.flush()
        kept, seeded = record.get("warm/kept_total"), record.get("warm/seeded")
        self._say(f"round {int(index) + 1}: kept {kept} programs ({seeded} seeded), "
                  f"SFT loss {_fmt(record.get('warm/sft_loss'))}", prefix="warm start")
        return record

    def headline(self, metrics: Mapping[str, Any]) -> dict[str, str]:
        """The progress-bar figures of one record: reward mean, the game's progress metric, compliance, KL."""
        out: dict[str, str] = {}
        headline = dict(HEADLINE)
        if self.metric:
            headline = {"reward": HEADLINE["reward"], "best": (self.metric,),
                        **{k: v for k, v in HEADLINE.items() if k != "reward"}}
        for label, names in headline.items():
            value = _first(metrics, names)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if label == "best":
                    out[label] = f"{value:g}"
                elif label == "comply":
                    out[label] = f"{100 * value:.0f}%"
                elif label == "kl":
                    out[label] = f"{value:.2g}"
                else:
                    out[label] = f"{value:.3f}"
        return out

    def _update_bar(self, step: int, record: Mapping[str, Any]) -> None:
        if self._bar is None:
            return
        # ``step`` is the 0-based index of the step just finished: step + 1 steps are done.
        advance = step + 1 - self._done
        if advance > 0:
            self._bar.update(advance)
            self._done = step + 1
        self._bar.set_postfix(self.headline(record), refresh=True)

    def _check_signal(self, step: int, record: Mapping[str, Any]) -> None:
        frac = _first(record, _ZERO_VAR_KEYS)
        if not isinstance(frac, (int, float)):
            return
        if frac > ZERO_VARIANCE_WARN and not self._warned_low_signal:
            # Warn once per stretch of low signal, again only after it recovered.
            self._warned_low_signal = True
            self._say(f"step {step}: {100 * frac:.0f}% of groups have the same reward for every "
                      "sample (no learning signal): the task is too easy or too hard for the model; "
                      "consider the reward spec, the prompt, the temperature or the group size")
        elif frac <= ZERO_VARIANCE_WARN:
            self._warned_low_signal = False

    def _say(self, text: str, prefix: str = "warning") -> None:
        # A note to the person watching the run, not a fault in the code: one line on stderr, never a
        # Python warning (which names a source line of this module and lands in test warning summaries).
        # Above a live progress bar it must go through the bar, or it tears the bar.
        if self._bar is not None:
            self._bar.write(f"{prefix}: {text}", file=sys.stderr)
        else:
            print(f"{prefix}: {text}", file=sys.stderr)

    # --- best strategies ---------------------------------------------------------------

    def save_best(self, source: str | None, breakdown_total: float, info: Mapping[str, Any] | None = None,
                  step: int | None = None) -> bool:
        """Keep ``source`` if it is among the top-k totals so far (each program once); True if kept."""
        if not source or not source.strip() or not math.isfinite(float(breakdown_total)):
            return False
        key = source.strip()
        total = float(breakdown_total)
        entry = {"total": total, "step": step, "info": _plain(dict(info or {})), "source": key + "\n"}
        current = {e["source"].strip(): e for e in self._best}
        if key in current and current[key]["total"] >= total:
            return False
        # A program already kept that now scores higher (other seeds) keeps its better figure.
        current[key] = entry
        ranked = sorted(current.values(), key=lambda e: (-e["total"], e["source"]))[: self.top_k]
        if not any(e["source"].strip() == key for e in ranked):
            return False
        self._best = ranked
        self._write_best()
        return True

    def _write_best(self) -> None:
        folder = self.run_dir / BEST_DIR
        folder.mkdir(exist_ok=True)
        for rank, entry in enumerate(self._best, 1):
            _atomic_write(folder / f"best-{rank}.py", _best_file_text(rank, entry))
        for extra in folder.glob("best-*.py"):
            suffix = extra.stem.split("-", 1)[1]
            if not suffix.isdigit() or int(suffix) > len(self._best):
                extra.unlink(missing_ok=True)
        _atomic_write(folder / "index.json", json.dumps(self._best, indent=2) + "\n")

    @property
    def best(self) -> list[dict]:
        """The kept strategies, best first: dicts with total, step, info, source."""
        return [dict(e) for e in self._best]

    # --- end ------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close the metrics file, TensorBoard and the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _best_file_text(rank: int, entry: Mapping[str, Any]) -> str:
    info = entry.get("info") or {}
    facts = ", ".join(f"{k} {_fmt(info[k])}" for k in info if k in ("mean_score", "won_rate", "compliant")
                      or (f"mean_{k}" in info and k != "score") or (k.startswith("mean_") and k[5:] in info))
    lines = [f"# codepolicy best strategy #{rank}",
             f"# total reward: {entry['total']:.4f}" + (f" (step {entry['step']})" if entry.get("step") is not None else "")]
    if facts:  # one comment line, whatever the figures hold: nothing in it may become code
        lines.append(f"# {safe_text(facts)}")
    return "\n".join(lines) + "\n\n" + entry["source"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value == int(value) and abs(value) >= 1 else f"{value:.3g}"
    return str(value)


def read_best(run_dir: str | os.PathLike) -> list[dict]:
    """The kept best strategies of a run (best first), [] when there are none."""
    path = Path(run_dir) / BEST_DIR / "index.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in data if isinstance(e, dict) and "source" in e and "total" in e]


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The run's metric records sorted by step, the last record of each step winning (resumes redo steps)."""
    from codepolicy.files import MissingFileError, quote, require_dir

    path = require_dir(run_dir, "run dir") / METRICS_FILE
    if not path.is_file():
        raise MissingFileError(f"run dir {quote(run_dir)} has no {METRICS_FILE} (no step was logged)")
    by_step: dict[int, dict] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash; every complete line before it counts
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def read_warm_start(run_dir: str | os.PathLike) -> list[dict]:
    """The run's warm-start records sorted by round, the last record of each round winning ([] when none)."""
    path = Path(run_dir) / METRICS_FILE
    by_round: dict[int, dict] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("warm_start_round"), int):
                    by_round[record["warm_start_round"]] = record
    return [by_round[r] for r in sorted(by_round)]


# (title, [(metric names to try, label)]) per panel; the game's progress panel goes in as the third.
_PANELS: list[tuple[str, list[tuple[tuple[str, ...], str]]]] = [
    ("reward", [(("reward_mean",), "mean"), (("reward_max",), "max"), (("eval/reward_mean",), "eval mean")]),
    ("compliance rate", [(("compliance", "compliance_rate"), "compliant"), (("eval/compliance",), "eval compliant"), (("format_ok", "format_rate"), "format ok"),
                         (("played", "played_rate"), "played")]),
    ("score", [(("score_mean", "mean_score"), "mean"), (("score_max",), "max")]),
    ("KL to reference", [(("kl", "kl_mean"), "kl")]),
]


def _run_progress(run_dir: Path, records: list[dict]) -> Any:
    """The ``Progress`` of the run's game (from its config.toml), or of the first registered game whose metric
    the records hold; None when neither is known."""
    import envs

    try:
        from codepolicy import tomlconfig

        game = tomlconfig.read_toml(run_dir / "config.toml", what="run config").get("game")
        if isinstance(game, str):
            return envs.get(game).progress
    except Exception:  # noqa: BLE001 - no config, an old or foreign one: fall back on the records
        pass
    for name in envs.names():
        progress = envs.get(name).progress
        if progress is not None and any(progress.metric in r for r in records):
            return progress
    return None


def moving_average(values: list[float], window: int) -> list[float]:
    """The trailing mean of the last ``window`` values at each point (fewer at the start)."""
    # Each window summed afresh: a running total would carry rounding from one end of the run to the other.
    return [math.fsum(values[max(0, i - window + 1): i + 1]) / min(i + 1, window) for i in range(len(values))]


def _smoothing_window(n: int) -> int:
    """About a tenth of the run, at least 3 points: 0 (no smoothed line) below 6 points."""
    return 0 if n < 6 else max(3, n // 10)


def _kl_off_reason(run_dir: Path) -> str:
    """Why a run logged no KL: its config.toml's kl_beta = 0 skips the reference pass."""
    from codepolicy import tomlconfig

    try:
        beta = tomlconfig.read_toml(run_dir / "config.toml").get("kl_beta")
    except (OSError, ValueError):
        beta = None
    return "KL off (kl_beta = 0)" if beta in (0, 0.0) else "KL not logged"


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw the run's curves (reward, compliance, max tile, score, KL) to a PNG; return its path.

    The figure is :func:`draw_run`'s; ``out`` defaults to RUN_DIR/curves.png, written atomically.
    """
    import matplotlib.pyplot as plt

    from codepolicy.files import FileError, MissingFileError, check_writable_dir, quote

    target = Path(out) if out is not None else Path(run_dir) / PLOT_FILE
    if out is not None:  # checked before the drawing, so a bad --out costs nothing
        if target.is_dir():
            raise FileError(f"--out {quote(target)} is a folder, not a file", "is_dir")
        if not target.parent.is_dir():
            raise MissingFileError(f"folder of --out {quote(target.parent)} does not exist")
        check_writable_dir(target.parent, "folder of --out")
    fig = draw_run(run_dir)
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, target)
    return target


def draw_run(run_dir: str | os.PathLike) -> Any:
    """The matplotlib figure of the run's curves, one panel per figure group (the caller closes it).

    Each panel's first figure gets a moving average beside its raw points once the run has six
    steps or more (the max tile: the best so far). Steps are whole numbers on the x axis; the max
    tile is on a base-2 axis from 0 up; a run without KL (``kl_beta = 0``) gets no KL panel, and
    the title says why.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, ScalarFormatter

    from codepolicy.files import quote

    records = read_metrics(run_dir)
    if not records:
        raise ValueError(f"run dir {quote(run_dir)} has an empty {METRICS_FILE}: nothing to plot")

    def series_points(names: tuple[str, ...]) -> list[tuple[int, float]]:
        return [(r["step"], float(v)) for r in records
                if isinstance(v := _first(r, names), (int, float)) and not isinstance(v, bool)]

    progress = _run_progress(Path(run_dir), records)
    progress_title = progress.metric.replace("_", " ") if progress is not None else ""
    every = list(_PANELS)
    if progress is not None:
        every.insert(2, (progress_title, [((progress.metric,), "best"), ((f"mean_{progress.metric}",), "mean")]))
    panels = [(title, series) for title, series in every
              if not title.startswith("KL") or any(series_points(names) for names, _ in series)]
    note = "" if len(panels) == len(every) else f"; {_kl_off_reason(Path(run_dir))}"
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.3 * len(panels)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, (title, series) in zip(axes, panels):
        drawn = False
        for k, (names, label) in enumerate(series):
            points = series_points(names)
            if not points:
                continue
            xs, ys = zip(*points)
            window = _smoothing_window(len(ys)) if k == 0 else 0
            if window:  # noisy steps: the raw points faint, the trend as a line beside them
                line, = ax.plot(xs, ys, linestyle="none", marker=".", alpha=0.45, label=f"{label} (each step)")
                if title == progress_title:  # a record, not a level: the best so far is the trend that matters
                    ax.step(xs, list(itertools.accumulate(ys, max)), where="post", color=line.get_color(),
                            label=f"{label} so far")
                else:
                    ax.plot(xs, moving_average(list(ys), window), color=line.get_color(),
                            label=f"{label} (mean of {window} steps)")
            else:
                ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=label)
            drawn = True
        if title == "reward":
            band = [(r["step"], r["reward_mean"] - r["reward_std"], r["reward_mean"] + r["reward_std"])
                    for r in records if isinstance(r.get("reward_mean"), (int, float))
                    and isinstance(r.get("reward_std"), (int, float))]
            if band:
                xs, lo, hi = zip(*band)
                ax.fill_between(xs, lo, hi, alpha=0.2, label="± std")
        if title == progress_title and progress.scale == "log2" and drawn:
            # Tiles double: equal steps per doubling. Linear from 0 (no game played) to 2, so the axis never
            # shows fractions of a tile or negative tiles; ticks on the tiles themselves.
            top = max([v for names, _ in series for _, v in series_points(names)] + [2.0])
            ax.set_yscale("symlog", base=2, linthresh=2, linscale=0.5)
            ax.set_ylim(0, top * 1.5)
            powers = [2 ** k for k in range(1, int(math.log2(top)) + 2)]
            ticks = [0] + powers[len(powers) % 2::2] if len(powers) > 7 else [0] + powers  # 2, 8, 32, ... when crowded
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_formatter(ScalarFormatter())
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    fig.suptitle(f"codepolicy run {Path(run_dir).resolve().name}{note}")
    fig.tight_layout()
    return fig
