"""The random start of a new study (``search.cheap_first``): feasible random draws,
spread over the space's model families and input resolutions, queued before the sampler
proposes anything itself."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from nas.search import Objective

log = logging.getLogger(__name__)

#: Random draws `enqueue_cheap_first` may make per random-start candidate it looks for,
#: a static cost each (a model built untrained: about 13 ms on the Fashion-MNIST
#: benchmark's m4-tight budget, where one draw in fifty is feasible), and the seconds it
#: may spend on them; past either it queues the feasible draws it has.
START_DRAWS_PER_CANDIDATE = 100
START_SECONDS = 30.0
#: It stops earlier once it has enough feasible draws and this many feasible draws in a
#: row brought no family and resolution it had not seen.
START_FEASIBLE_WITHOUT_NEW_CELL = 25


def enqueue_cheap_first(study: optuna.Study, objective: Objective) -> None:
    """Queue the sampler's random start in a new study (``search.cheap_first``): as many
    distinct random draws (seeded by ``search.seed``) as the sampler's start, or one per
    (family, resolution) found when there are more (`start_size`), each one
    feasible by its static cost (the chip's limits, ``search.max_latency_ms`` and
    ``search.min_macs``), spread over the space's model families and input resolutions
    (`start_cells`), trained fewest MACs first. Infeasible draws are passed over: they
    would not be trained, and a start of them teaches the sampler nothing about accuracy
    (on the Fashion-MNIST benchmark's m4-tight budget, TPE's own 8 random draws held no
    feasible architecture on two seeds of three). Fewer, or none, are queued when
    `START_DRAWS_PER_CANDIDATE` or `START_SECONDS` run out first; the search log says
    how many, and which families and resolutions they cover."""
    cfg = objective.cfg
    startup = int(getattr(cfg.sampler, "n_startup_trials", 0))
    n = min(startup, cfg.search.n_trials - len(cfg.search.enqueue))
    if cfg.search.strategy != "train" or n < 2:
        return
    space = objective.comp.space
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.search.seed))
    drawn: list[StartDraw] = []
    draws, since_new, started = 0, 0, time.monotonic()
    while draws < n * START_DRAWS_PER_CANDIDATE and time.monotonic() - started < START_SECONDS:
        if len(drawn) >= n and since_new >= START_FEASIBLE_WITHOUT_NEW_CELL:
            break
        draws += 1
        trial = draw.ask()
        try:
            spec = space.sample(trial)
            cost = objective.spec_cost(spec)
        except Exception:  # noqa: BLE001 - not a start candidate; the sampler may retry it
            continue
        fits = objective.cost_fits(cost)
        chosen = trial.params  # a copy each time it is read: once, not once per draw kept
        if fits and all(chosen != d.params for d in drawn):
            cell = (space.family(spec), space.resolution(spec))
            since_new = since_new + 1 if any(d.cell == cell for d in drawn) else 0
            drawn.append(StartDraw(cell, float(cost.macs), chosen))
    room = cfg.search.n_trials - len(cfg.search.enqueue)
    wanted = start_size(n, len({d.cell for d in drawn}), room)
    start = start_cells(drawn, wanted)
    cells = sorted({f"{family}@{size}" for family, size in (d.cell for d in start)})
    log.info(
        "random start: %d of %d wanted, feasible among %d random draws (%.1f s), "
        "cheapest first%s; families@resolutions: %s",
        len(start),
        wanted,
        draws,
        time.monotonic() - started,
        "" if len(start) == wanted else "; the sampler draws the rest itself",
        ", ".join(cells) or "none",
    )
    for d in sorted(start, key=lambda d: d.macs):  # stable: equal MACs keep their pick order
        # processes that start together on one new study queue the same draws once
        study.enqueue_trial(d.params, skip_if_exists=True)


def start_size(n: int, cells: int, room: int) -> int:
    """Places in the random start: the sampler's ``n``, or one per (family, resolution)
    cell the draws found when there are more, up to half of ``room`` (the trials left
    after ``search.enqueue``), so the sampler keeps at least the other half."""
    return max(n, min(cells, room // 2))


@dataclass(frozen=True)
class StartDraw:
    """A feasible random draw for the start: its (family, resolution), MACs and params."""

    cell: tuple[str, int]
    macs: float
    params: dict[str, Any]


def start_cells(drawn: list[StartDraw], n: int) -> list[StartDraw]:
    """``n`` of ``drawn`` (in draw order), spread over model families and, within each
    family, over input resolutions: families take turns, and each takes its least used
    (family, resolution) first, the first drawn among equals; a family whose cells are
    all in the start already passes its turn while another family has one that is not,
    so no cell is taken twice before every cell is taken once. A start of random draws
    alone follows the space's proportions: where one family has most of the feasible
    architectures, the sampler may never see the others. On the Fashion-MNIST
    benchmark's m4-tight budget such a start held a plain CNN at 28 px on one seed of
    three, and TPE's model was one only there (mean 0.9212); spread, every seed's start
    held one, and every seed's model was one (0.9270). Families taking turns alone were
    not enough once the space grew (``cnn_convs``): a family with every cell taken took
    a second place before the CNN's third turn, and seed 2 lost its 28 px CNN
    (`benchmarks/fashion_mnist/results/ANALYSIS.md`)."""
    queues: dict[tuple[str, int], list[StartDraw]] = {}
    for d in drawn:
        queues.setdefault(d.cell, []).append(d)
    families = list(dict.fromkeys(cell[0] for cell in queues))
    used = dict.fromkeys(queues, 0)
    start: list[StartDraw] = []
    while len(start) < n and any(queues.values()):
        for family in families:
            cells = [c for c in queues if c[0] == family and queues[c]]
            if not cells or len(start) == n:
                continue
            cell = min(cells, key=used.__getitem__)  # the first drawn among equals
            if used[cell] and any(queues[c] and not used[c] for c in queues):
                continue
            used[cell] += 1
            start.append(queues[cell].pop(0))
    return start
