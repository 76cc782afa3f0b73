"""What a search shows and when a process stops: after each trial, a progress bar on a
terminal (one line per trial otherwise), the trial's line in ``search.log``, the observer
hook, the check for trials abandoned by dead workers, the warning when the sampler keeps
repeating itself, and the count that ends the process's share of the trials."""

from __future__ import annotations

import logging
from typing import Any

import optuna
from tqdm import tqdm

from nas import console, report
from nas.interrupt import CTRL_C
from nas.plugin_manager import PluginManager
from nas.record import (
    ACC_INT8,
    COMPRESS_S,
    DUPLICATE_OF,
    FEASIBLE,
    LATENCY_MS,
    REASON,
    SCORED_BY,
    STATE,
    SUPERNET,
    TRAIN_S,
)
from nas.storage import fail_stale_trials

log = logging.getLogger(__name__)

#: `Progress.watch_repeats`: over this many trials, more than this share of repeats warns.
REPEAT_WINDOW = 100
REPEAT_WARN_SHARE = 0.5
#: With ``search.count_infeasible=false``, a process samples at most this many candidates
#: per trial it is to count, so a budget that nothing fits still ends.
MAX_SAMPLED_PER_TRIAL = 50


class Progress:
    """After each trial: the tqdm bar (trial n/N, best feasible int8 accuracy so far), the
    observer hook, and the check for trials abandoned by dead workers.

    With ``count_infeasible=False`` it counts only candidates that were not rejected
    before training, and stops the study when ``total`` of them are done (or after
    ``MAX_SAMPLED_PER_TRIAL * total`` candidates in all)."""

    def __init__(
        self,
        total: int,
        pm: PluginManager,
        grace_s: float,
        retry: bool,
        count_infeasible: bool,
        desc: str = "trials",
    ) -> None:
        #: No terminal to draw a bar on (output to a file or a pipe, or 0 columns): one
        #: line per trial instead.
        self.plain = not console.interactive()
        self.bar = tqdm(
            total=total, desc=desc, unit="trial", dynamic_ncols=True, disable=self.plain
        )
        self.desc = desc
        self.pm = pm
        self.grace_s, self.retry = grace_s, retry
        self.total, self.count_infeasible = total, count_infeasible
        self.counted = self.sampled = 0
        self.best: tuple[float, float] | None = None
        self.recent: list[bool] = []  # whether each of the last trials was a repeat
        self.warned = False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        CTRL_C.check()
        fail_stale_trials(study, self.grace_s, self.retry)
        rec = report.record(trial)
        acc = rec.get(ACC_INT8)
        if rec[FEASIBLE] and acc == acc and acc is not None:
            key = (acc, -rec[LATENCY_MS])
            if self.best is None or key > (self.best[0], -self.best[1]):
                self.best = (acc, rec[LATENCY_MS])
        line = trial_line(rec)
        log.info("trial %d: %s", trial.number, line)
        if rec[STATE] == "FAIL" and not self.plain:
            self.bar.write(f"trial {trial.number} failed: {rec[REASON]}")
        best = f"{self.best[0]:.3f} @ {self.best[1]:.2f} ms" if self.best else "none yet"
        self.bar.set_postfix_str(f"best feasible acc_int8 {best}")
        self.sampled += 1
        rejected = rec[STATE] == "COMPLETE" and not rec[FEASIBLE]
        rejected |= DUPLICATE_OF in rec  # a repeat: no training either
        if self.count_infeasible or not rejected:
            self.counted += 1
            self.bar.update(1)
        self.watch_repeats(DUPLICATE_OF in rec, study)
        if self.plain:
            console.line(
                f"{self.desc} {self.counted}/{self.total}: trial {trial.number} {line}; "
                f"best feasible acc_int8 {best}"
            )
        self.pm.observe_trial(trial.number, rec)
        if self.count_infeasible:
            return
        if self.counted >= self.total:
            stop_study(study)
        elif self.sampled >= MAX_SAMPLED_PER_TRIAL * self.total:
            self.bar.write(
                f"stopping: {self.sampled} candidates sampled, only {self.counted} of "
                f"{self.total} were new architectures that fit the budget "
                "(search.count_infeasible=false)"
            )
            stop_study(study)

    def watch_repeats(self, repeat: bool, study: optuna.Study) -> None:
        """Warn once when most of the last `REPEAT_WINDOW` trials proposed an architecture
        the study already has: the sampler has settled, and further trials add little."""
        self.recent = [*self.recent[1 - REPEAT_WINDOW :], repeat]
        if self.warned or len(self.recent) < REPEAT_WINDOW:
            return
        share = sum(self.recent) / REPEAT_WINDOW
        if share > REPEAT_WARN_SHARE:
            self.warned = True
            sampler = type(study.sampler).__name__
            message = (
                f"{share:.0%} of the last {REPEAT_WINDOW} trials repeated an architecture "
                f"the study already had: {sampler} has settled on a region. For more "
                "distinct candidates try sampler=nsga2 (e.g. sampler.population_size=50) "
                "or sampler=random"
            )
            log.warning(message)  # search.log and the terminal

    def done(self) -> bool:
        """Whether this process has run its share (see the class docstring)."""
        cap = self.sampled >= MAX_SAMPLED_PER_TRIAL * self.total and not self.count_infeasible
        return self.counted >= self.total or cap


def trial_line(rec: dict[str, Any]) -> str:
    """One trial's outcome in words, for ``search.log`` and non-terminal output."""
    if DUPLICATE_OF in rec:
        return f"repeat of trial {rec[DUPLICATE_OF]}, not trained again"
    state = rec[STATE]
    if state == "FAIL":
        return f"failed: {rec.get(REASON)}"
    if state == "PRUNED":
        return f"stopped early by the pruner: {rec.get(REASON)}"
    if state != "COMPLETE":
        return state.lower()
    if not rec[FEASIBLE]:
        return f"rejected before training: {rec.get(REASON)}"
    how = "inherited weights" if rec.get(SCORED_BY) == SUPERNET else rec.get(SCORED_BY)
    compress_s = rec.get(COMPRESS_S) or 0
    return (
        f"acc_int8 {rec.get(ACC_INT8, float('nan')):.4f} ({how}), "
        f"{rec[LATENCY_MS]:.2f} ms, {rec.get(TRAIN_S) or 0:.0f} s training"
        + (f", {compress_s:.0f} s compression" if compress_s >= 1 else "")
    )


def stop_study(study: optuna.Study) -> None:
    """`optuna.Study.stop`, which refuses outside `optuna.Study.optimize` (a recovered
    trial is counted between two calls of it: `optimize`)."""
    try:
        study.stop()
    except RuntimeError:
        pass
