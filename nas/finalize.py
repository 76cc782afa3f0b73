"""``python -m nas finalize RUN_DIR``: train a search's best candidates again with a
longer recipe and keep the best by validation accuracy.

A search ranks candidates with a short recipe on a share of the data; the model to ship
deserves more. ``finalize`` takes the top ``--top`` distinct architectures of a finished
run (by ``acc_int8``, the int8 validation accuracy the search ranked them by) and runs a
new search over exactly those (``search.enqueue``), with the run's own chip, space,
dataset, backend and compression, and this recipe:

- the whole training split less validation (``dataset.train_subset=0`` where the dataset
  has that option);
- ``--epochs`` epochs (default twice the search's);
- training batches augmented if asked (``--augment``: ``none``, the default, ``flip``,
  ``crop``, ``crop_flip``, or ``auto``, what the dataset declares label-preserving,
  `nas.data.BaseDataset.augment`: crops and mirrors for Fashion-MNIST). Models of a few
  kilobytes underfit rather than overfit, and on Fashion-MNIST's Uno-sized models crops
  cost points (README, "Finalize");
- distillation from a teacher (``--teacher auto``: the ``distill`` method's cached
  default teacher; a trial folder; or ``none``): after the first epochs of
  cross-entropy, the last ``--distill-epochs`` (default all but one) learn from the
  teacher at the full learning rate (``compression.distill.lr_scale=1.0``, cosine), so a
  recipe with and one without a teacher train the same number of epochs.

With ``--screen N`` (more than ``--top``), the top N are screened first: each trains
``--screen-epochs`` epochs (default the search's) on the same data without a teacher, in
a run directory of its own (``OUT-screen``, which must not exist yet), and the ``--top``
best of them by that validation accuracy get the full recipe; ``--screen-from DIR``
takes them from a screen an earlier finalize of the same run wrote (``screen.json``
there), for instance to train the same finalists again without the teacher. The
search's proxy (a few epochs on a share of the data) cannot tell its top candidates
apart, and favours networks that learn fast over those that end best; a short run on
the whole split is a better judge for a fraction of the full recipe's cost.
``--screen-pick front`` chooses what to screen with less trust in that proxy: of the
best 2N by search accuracy, the N on the first fronts of (search accuracy, MACs), so a
larger network a little behind the proxy's favourites is screened too.

The output is a run directory like a search's (default ``RUN_DIR/final``): ``study.db``,
``trials.csv``, ``report.md``, ``best/``, plus ``finalize.json``, which says where each
trial came from. Its best model is the finalist with the highest validation accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nas.errors import ArgumentParser, ConfigError
from nas.train import AUGMENTS

#: Override keys of the search that the recipe sets itself: these keys, and every key
#: under the groups of `REPLACED_GROUPS`. The compression selection is replaced, but the
#: methods' own options (``compression.distill.temperature=4``) carry over.
REPLACED = (
    "hydra.run.dir",
    "search.n_trials",
    "search.enqueue",
    "search.epochs",
    "search.timeout_s",
    "search.strategy",
    "search.workers",
    "search.cheap_first",
    "search.count_infeasible",
    "search.augment",
    "compression",
    "dataset.train_subset",
)
REPLACED_GROUPS = ("hydra.sweep", "search.supernet", "storage", "study", "sampler", "pruner")
FINALIZE_FILE = "finalize.json"
SCREEN_FILE = "screen.json"
TEACHERS = ("auto", "none")
#: ``--screen-pick``: what the screen trains (`screen_pool`).
SCREEN_PICKS = ("top", "front")

HELP = """\
usage: python -m nas finalize RUN_DIR [--top K] [--epochs N] [--distill-epochs D]
                              [--augment auto|none|crop|crop_flip] [--teacher auto|none|DIR]
                              [--screen N [--screen-epochs E] [--screen-pick top|front]
                               | --screen-from DIR]
                              [--out DIR] [key=value ...]

Train the best K architectures of a finished search again with a longer recipe (the
whole training split, augmentation, a teacher) and keep the best by validation accuracy.
With --screen N (N > K), the best N are first trained E epochs each (default the
search's) on the whole split without a teacher (OUT-screen), and the K best of those by
validation accuracy get the recipe (--screen-pick front: the N of the best 2N on the
first fronts of search accuracy and MACs, larger networks included); --screen-from DIR
reuses the screen an earlier finalize of this run wrote. Writes a run directory like a
search's (default RUN_DIR/final). Extra key=value arguments are Hydra overrides for the
new run (e.g. search.lr=0.005)."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def replaced(override: str) -> bool:
    """Whether the recipe sets this override of the search itself."""
    key = _key(override)
    return key in REPLACED or any(key == g or key.startswith(g + ".") for g in REPLACED_GROUPS)


def last_wins(overrides: list[str]) -> list[str]:
    """``overrides`` with only the last of those that set the same key (Hydra refuses a
    key given twice): the command line's own come last and win."""
    last = {_key(o): i for i, o in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[_key(o)] == i]


def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (strings quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _plain(value: Any) -> Any:
    """A value of ``trials.csv`` as the space gave it (NumPy scalars unwrapped; floats
    that pandas made of integers back to int)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def top_candidates(run_dir: Path, k: int, space: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``k`` best distinct architectures of the run by ``acc_int8`` that are still
    points of ``space``, the finalize run's (`recipe_space`), each made whole
    (`BaseSearchSpace.complete`) and then checked with every choice named
    (`nas.validate.reproduces`): a choice the space gained since the run that it cannot
    fill would otherwise be drawn at random. Returns dicts with the trial ``number``, its
    ``acc_int8`` and its ``arch`` (the space's choices), and a note per one left out."""
    import pandas as pd

    from nas.record import ACC_INT8, ARCH_PREFIX, DUPLICATE_OF, FEASIBLE, STATE
    from nas.validate import reproduces

    csv = run_dir / "trials.csv"
    try:
        df = pd.read_csv(csv)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"finalize: {csv}: cannot read the search's trials ({exc})") from None
    needed = [c for c in (STATE, FEASIBLE, ACC_INT8) if c not in df]
    if needed:
        raise ConfigError(f"finalize: {csv}: no column {needed[0]}; is it a search's trials.csv?")
    done = df[(df[STATE] == "COMPLETE") & (df[FEASIBLE] == True) & df[ACC_INT8].notna()]  # noqa: E712
    if DUPLICATE_OF in done:
        done = done[done[DUPLICATE_OF].isna()]
    arch_cols = [c for c in df.columns if c.startswith(ARCH_PREFIX)]
    picked: list[dict[str, Any]] = []
    notes: list[str] = []
    for _, row in done.sort_values(ACC_INT8, ascending=False, kind="stable").iterrows():
        number = int(row["number"])
        saved = run_dir / "trials" / f"{number:05d}" / "arch.json"
        if saved.is_file():
            arch = json.loads(saved.read_text())["arch"]
        else:
            arch = {c[len(ARCH_PREFIX) :]: _plain(row[c]) for c in arch_cols if pd.notna(row[c])}
        arch = space.complete(arch) if arch else arch
        if not arch or arch in [p["arch"] for p in picked]:
            continue
        why = reproduces(space, arch, complete=True)
        if why:
            family = f" ({arch['family']})" if "family" in arch else ""
            notes.append(f"trial {number}{family} left out: {why}")
            continue
        macs = float(row["macs"]) if pd.notna(row.get("macs")) else None
        picked.append(
            {"number": number, ACC_INT8: float(row[ACC_INT8]), "macs": macs, "arch": arch}
        )
        if len(picked) == k:
            break
    if not picked:
        raise ConfigError(
            f"finalize: {csv}: no completed, feasible, scored trial this recipe can train"
            + (f" ({notes[0]})" if notes else "")
        )
    return picked, notes


def recipe_space(args: list[str]) -> Any:
    """Compose the finalize run's config and build its components (the chip, the space
    restricted to what the recipe's compression can handle, the dataset, loaded once for
    the run too); returns that space, which the candidates must still be points of."""
    from nas.config import register_configs
    from nas.search import build_components
    from nas.validate import compose_config, parse, selected_profiles

    register_configs(selected_profiles(parse(args)))
    cfg = compose_config(args, "finalize: ")
    return build_components(cfg).space


def recipe_args(run_dir: Path, opts: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The ``search`` command line of the finalize run, less its candidates
    (`enqueue_args`), and the recipe it encodes: the candidates, and with ``--screen``
    the screen's own command line (``recipe["screen"]``)."""
    hydra_dir = run_dir / ".hydra"
    try:
        overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")]
        cfg = OmegaConf.load(hydra_dir / "config.yaml")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"finalize: {hydra_dir}: cannot read the search's configuration ({exc}); "
            "finalize needs a run directory a search wrote"
        ) from None
    epochs = opts.epochs or 2 * int(cfg.search.epochs)
    teacher = opts.teacher
    distill_epochs = 0 if teacher == "none" else opts.distill_epochs
    if distill_epochs is None:
        distill_epochs = epochs - 1
    if teacher != "none" and not 1 <= distill_epochs < epochs:
        raise ConfigError(
            f"finalize: --distill-epochs {distill_epochs} must be between 1 and --epochs - 1 "
            f"({epochs - 1})"
        )
    augment = opts.augment
    if augment == "auto":
        from nas.plugin_manager import get_plugin_manager

        augment = get_plugin_manager().get("dataset", str(cfg.dataset.name)).augment
    methods = [str(m) for m in cfg.compression]
    kept = [o for o in overrides if not replaced(o)]
    args = _command(kept, cfg, opts.out, epochs, augment, methods, teacher, distill_epochs)
    args = last_wins([*args, *opts.overrides])
    notes: list[str] = []
    if opts.screen_from:
        earlier = earlier_screen(opts.screen_from, run_dir)
        picked = earlier["candidates"]
    else:
        space = recipe_space(args)
        wide = 2 if opts.screen_pick == "front" else 1
        picked, notes = top_candidates(run_dir, max(opts.top, wide * opts.screen), space)
        if opts.screen_pick == "front":
            picked = screen_pool(picked, opts.screen)
    recipe = {
        "source": str(run_dir),
        "candidates": picked,
        "left_out": notes,
        "epochs": epochs,
        "distill_epochs": distill_epochs,
        "teacher": teacher,
        "augment": augment,
        "compression": methods,
        "screen": None,
    }
    if opts.screen_from:
        recipe["screen"] = {"dir": str(opts.screen_from), "epochs": earlier["epochs"]}
        recipe["screen"].update(pick=earlier.get("pick", SCREEN_PICKS[0]), reused=True)
    elif len(picked) > opts.top:
        screen_epochs = opts.screen_epochs or int(cfg.search.epochs)
        plain = [m for m in methods if m != "distill"]
        own, extra = (without_distill(a) for a in (kept, opts.overrides))
        screen = _command(own, cfg, screen_dir(opts.out), screen_epochs, augment, plain)
        screen = last_wins([*screen, *extra])
        recipe["screen"] = {
            "dir": str(screen_dir(opts.out)),
            "epochs": screen_epochs,
            "pick": opts.screen_pick,
            "command": screen + enqueue_args(picked),
        }
    elif opts.screen:
        print(f"finalize: only {len(picked)} candidates, --top {opts.top}: no screen", flush=True)
    return args, recipe


def screen_pool(pool: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` of ``pool`` front after front of (search ``acc_int8``, ``macs``), both higher
    better: a network only leaves room for one that both scored better and computes more.
    A front with more room than left is taken at evenly spaced places along it, both ends
    included, so the proxy's favourite and the largest network of the pool are always in.
    A short proxy ranks networks that learn fast above larger ones that end better (the
    m4-tight benchmark's screens, ANALYSIS.md). A candidate without ``macs`` counts as the
    smallest."""
    from nas.record import ACC_INT8

    def key(c: dict[str, Any]) -> tuple[float, float]:
        macs = c.get("macs")
        return c[ACC_INT8], -1.0 if macs is None or macs != macs else float(macs)

    def beaten(c: tuple[float, float], by: tuple[float, float]) -> bool:
        return by[0] >= c[0] and by[1] >= c[1] and by != c

    keys = [key(c) for c in pool]
    left, out = list(range(len(pool))), list[int]()
    while left and len(out) < n:
        front = [i for i in left if not any(beaten(keys[i], keys[o]) for o in left)]
        front.sort(key=lambda i: (-pool[i][ACC_INT8], i))  # best first: fewest MACs first
        room = n - len(out)
        if len(front) > room:  # spread over the front, both ends in
            front = [front[round(j * (len(front) - 1) / max(room - 1, 1))] for j in range(room)]
        out += front
        left = [i for i in left if i not in front]
    return [pool[i] for i in out]


def without_distill(overrides: list[str]) -> list[str]:
    """``overrides`` for a run without a teacher: no option of the ``distill`` method (it
    would name a method the run does not have), and no ``distill`` in a ``compression``
    list."""
    out = []
    for o in overrides:
        key = _key(o)
        if key == "compression" and "=" in o:
            methods = o.split("=", 1)[1].strip().strip("[]").split(",")
            kept = [m.strip() for m in methods if m.strip() and m.strip() != "distill"]
            o = f"{o.split('=', 1)[0]}=[{','.join(kept)}]"
        elif key.startswith("compression.distill.") or key == "compression.distill":
            continue
        out.append(o)
    return out


def earlier_screen(folder: Path, run_dir: Path) -> dict[str, Any]:
    """What a screen of an earlier finalize of ``run_dir`` wrote (``screen.json`` in its
    folder): its ``epochs`` and the ``candidates`` it trained, in its trial order."""
    try:
        saved = json.loads((folder / SCREEN_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"finalize: --screen-from {folder}: no screen of an earlier finalize "
            f"({SCREEN_FILE}: {exc})"
        ) from None
    if Path(saved["source"]).resolve() != run_dir.resolve():
        raise ConfigError(
            f"finalize: --screen-from {folder} screened the candidates of {saved['source']}, "
            f"not of {run_dir}"
        )
    return saved


def _command(
    kept: list[str],
    cfg: Any,
    out: Path,
    epochs: int,
    augment: str,
    methods: list[str],
    teacher: str = "none",
    distill_epochs: int = 0,
) -> list[str]:
    """A finalize-style ``search`` command line: the search's own overrides (``kept``),
    then the recipe's."""
    if teacher != "none" and "distill" not in methods:
        methods = ["distill", *methods]
    args = [
        *kept,
        f"hydra.run.dir={out}",
        "search.strategy=train",
        f"search.epochs={epochs - distill_epochs}",
        f"search.augment={augment}",
        "search.cheap_first=false",
        "search.count_infeasible=true",
        "search.workers=1",
        "pruner.enabled=false",
        "compression=[" + ",".join(methods) + "]",
    ]
    if teacher != "none":
        # the distillation epochs are the schedule's: the full learning rate, annealed
        args.append(f"compression.distill.epochs={distill_epochs}")
        args.append("compression.distill.lr_scale=1.0")
        if teacher != "auto":
            args.append(f"compression.distill.teacher={teacher}")
    if "train_subset" in cfg.dataset:
        args.append("dataset.train_subset=0")
    return args


def enqueue_args(picked: list[dict[str, Any]]) -> list[str]:
    """The overrides that make a run train exactly these candidates, in this order."""
    return [
        f"search.n_trials={len(picked)}",
        "search.enqueue=" + hydra_value([p["arch"] for p in picked]),
    ]


def screen_dir(out: Path) -> Path:
    """Where ``--screen`` trains its candidates: beside the finalize run, ``OUT-screen``."""
    return out.with_name(out.name + "-screen")


def screened(recipe: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """The ``top`` candidates with the best validation accuracy in the screen run, each
    with that accuracy (``acc_int8_screen``); ``recipe["screened"]`` lists every screened
    one with it, None where the screen could not score it (left out, with a note in
    ``recipe["left_out"]``)."""
    import pandas as pd

    from nas.record import ACC_INT8

    out = Path(recipe["screen"]["dir"])
    try:
        df = pd.read_csv(out / "trials.csv").set_index("number")
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"finalize: {out}: cannot read the screen's trials ({exc})") from None
    recipe["screened"] = []
    for i, cand in enumerate(recipe["candidates"]):
        acc = df[ACC_INT8].get(i) if ACC_INT8 in df else None
        acc = None if acc is None or pd.isna(acc) else float(acc)
        recipe["screened"].append({**cand, "acc_int8_screen": acc})
        if acc is None:
            note = f"trial {cand['number']} left out: no screen result (see {out}/report.md)"
            print(f"finalize: {note}", flush=True)
            recipe["left_out"].append(note)
    scored = [c for c in recipe["screened"] if c["acc_int8_screen"] is not None]
    if not scored:
        raise ConfigError(f"finalize: {out}: the screen scored no candidate (see report.md)")
    return sorted(scored, key=lambda c: -c["acc_int8_screen"])[:top]


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(HELP)
        return 0
    ap = ArgumentParser(prog="python -m nas finalize", add_help=False)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--distill-epochs", type=int, default=None)
    ap.add_argument("--augment", default="none")
    ap.add_argument("--teacher", default="auto")
    ap.add_argument("--screen", type=int, default=0)
    ap.add_argument("--screen-epochs", type=int, default=None)
    ap.add_argument("--screen-from", type=Path, default=None)
    ap.add_argument("--screen-pick", default=None)
    ap.add_argument("--out", type=Path, default=None)
    opts, rest = ap.parse_known_args(argv)
    bad = [a for a in rest if "=" not in a or a.startswith("-")]
    if bad:
        raise ConfigError(f"finalize: unknown argument '{bad[0]}'; see python -m nas finalize -h")
    opts.overrides = rest
    if not opts.run_dir.is_dir():
        raise ConfigError(f"finalize: run directory '{opts.run_dir}' does not exist")
    if opts.top < 1:
        raise ConfigError(f"finalize: --top {opts.top} must be 1 or more")
    if opts.epochs is not None and opts.epochs < 2:
        raise ConfigError(f"finalize: --epochs {opts.epochs} must be 2 or more")
    if opts.screen and opts.screen <= opts.top:
        raise ConfigError(
            f"finalize: --screen {opts.screen} must be more than --top {opts.top} (or 0: none)"
        )
    if opts.screen_epochs is not None and opts.screen_epochs < 1:
        raise ConfigError(f"finalize: --screen-epochs {opts.screen_epochs} must be 1 or more")
    if opts.screen_epochs is not None and not opts.screen:
        raise ConfigError("finalize: --screen-epochs needs --screen N")
    if opts.screen_from is not None and opts.screen:
        raise ConfigError("finalize: --screen-from reuses a screen; it cannot go with --screen")
    if opts.screen_pick is not None and opts.screen_from is not None:
        raise ConfigError("finalize: --screen-from keeps the earlier screen's --screen-pick")
    if opts.screen_pick is not None and not opts.screen:
        raise ConfigError("finalize: --screen-pick needs --screen N")
    opts.screen_pick = opts.screen_pick or SCREEN_PICKS[0]
    if opts.screen_pick not in SCREEN_PICKS:
        raise ConfigError(
            f"finalize: --screen-pick {opts.screen_pick} is not valid; "
            f"use {' or '.join(SCREEN_PICKS)}"
        )
    if opts.augment not in ("auto", *AUGMENTS):
        raise ConfigError(
            f"finalize: --augment {opts.augment} is not valid; use auto, {', '.join(AUGMENTS)}"
        )
    if opts.teacher not in TEACHERS and not Path(opts.teacher).is_dir():
        raise ConfigError(
            f"finalize: --teacher {opts.teacher}: use auto, none or a trial folder "
            "(holding arch.json and model_float.pt)"
        )
    opts.out = (opts.out or opts.run_dir / "final").resolve()
    if opts.out.exists():
        raise ConfigError(
            f"finalize: '{opts.out}' exists; remove it or choose another with --out DIR"
        )
    if opts.screen and screen_dir(opts.out).exists():
        raise ConfigError(
            f"finalize: '{screen_dir(opts.out)}' exists, an earlier screen: reuse it with "
            "--screen-from, remove it, or choose another --out DIR"
        )
    args, recipe = recipe_args(opts.run_dir, opts)
    for note in recipe["left_out"]:
        print(f"finalize: {note}", flush=True)
    from nas.__main__ import search_command

    picked = recipe["candidates"]
    if recipe["screen"] and not recipe["screen"].get("reused"):
        print(
            f"finalize: screening {len(picked)} candidates of {opts.run_dir}, "
            f"{recipe['screen']['epochs']} epochs each, no teacher, augment {recipe['augment']}",
            flush=True,
        )
        code = search_command(recipe["screen"]["command"])
        if code:
            return code
        saved = {"source": str(opts.run_dir), **recipe["screen"], "candidates": picked}
        (screen_dir(opts.out) / SCREEN_FILE).write_text(json.dumps(saved, indent=2))
    if recipe["screen"]:
        picked = screened(recipe, opts.top)
    recipe["candidates"] = picked
    args += enqueue_args(picked)
    recipe["command"] = args
    print(
        f"finalize: {len(picked)} candidates of {opts.run_dir}, "
        f"{recipe['epochs']} epochs ({recipe['distill_epochs']} distilled from teacher "
        f"{recipe['teacher']}), augment {recipe['augment']}",
        flush=True,
    )
    code = search_command(args)
    if code == 0 and opts.out.is_dir():
        (opts.out / FINALIZE_FILE).write_text(json.dumps(recipe, indent=2, default=str))
        print(summary(opts.out, recipe))
    return code


def summary(out: Path, recipe: dict[str, Any]) -> str:
    """Search accuracy against the finalized accuracy, one line per candidate."""
    import pandas as pd

    from nas.record import ACC_INT8, ACC_INT8_TEST

    df = pd.read_csv(out / "trials.csv")
    steps = "search validation" + (" -> screen validation" if recipe.get("screen") else "")
    lines = [f"finalized (int8 accuracy: {steps} -> final validation, test):"]
    for i, cand in enumerate(recipe["candidates"]):
        row = df[df["number"] == i]
        final = row.iloc[0] if len(row) else None
        got = (
            f"{final[ACC_INT8]:.4f}, test {final[ACC_INT8_TEST]:.4f}"
            if final is not None and pd.notna(final.get(ACC_INT8))
            else "no result (see report.md)"
        )
        screen = f" -> screen {cand['acc_int8_screen']:.4f}" if "acc_int8_screen" in cand else ""
        lines.append(f"  trial {cand['number']}: {cand[ACC_INT8]:.4f}{screen} -> {got}")
    return "\n".join(lines)
