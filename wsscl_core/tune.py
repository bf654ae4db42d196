"""Hyperparameter search on Optuna, with the same budget for every method and nothing tuned on what is reported.

Each method gets one Optuna study per forget scenario in a persistent store (an SQLite file by
default, any SQLAlchemy URL such as PostgreSQL to spread trials over processes or machines: start
the same command on each with the same ``--storage``). A trial runs the method through the one run
pipeline on every tuning setting (dataset + original model) and split seed, scored on validation
images (``holdout="val"``), never the reported test set; its value is the mean Avg.Gap to Retrain.
The split seeds start at ``TUNING_SEED`` so they never coincide with the reported tables' seeds 0, 1, 2.
Retrain runs once per setting and split, and its scores are kept in the store for every trial and worker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, get_args

import torch

from .data import Dataset, ForgetSpec, load_dataset, load_default_subset
from .engine import CancelFlag, Schedule, TrainRecipe, check_cancel
from .errors import RunCancelled, WssclError
from .checkpoints import save_checkpoint
from .fileio import atomic_write_text
from .methods import (BASE_ROUNDS, DEFAULTS_FILE, Choice, FloatRange, IntRange, RoundsConfig, SearchRange, get_method,
                      make_config, TUNED_RECIPE_LR, method_names, scale_learning_rates, tuned_defaults)
from .metrics import avg_gap
from .models import pick_device
from .runs import ORIGINAL_LABEL, RunRequest, original_result, prepare, prepared_cost, run
from .workspace import Workspace, open_workspace, train_original

TUNING_SEED = 100  # first split seed of a study; the reported tables use seeds from 0
DEFAULT_STORAGE = "sqlite:///tuning/studies.db"
REFERENCES = "retrain-references"  # the study whose user attributes hold Retrain's scores per split
# A study's rounds train as BASE_ROUNDS unless it fixes other round options (tune --plain-rounds / --schedule /
# --lr-per-forget-sample): a study with other options scores a method's chosen point again with them, one extra
# trial every method with rounds gets alike, and the defaults file keeps one only if it scores lower by a clear
# margin (chosen_values).
# A round-option variant replaces the base only if it gains more than this many standard errors of its
# per-point gains (clear_gain): with the objectives' eight points, about a 4 % one-sided chance (Student's t,
# 7 degrees of freedom) that noise alone clears it. Judged on fewer points (a variant that changes only some
# runs), it must clear the Student-t value with that same chance (margin_for).
MARGIN_STANDARD_ERRORS = 2.0
MARGIN_POINTS = 8
# First split seed of the fresh points that confirm a round-option choice (tune --confirm-on): the objective
# uses 100-101 and an earlier replication of the margin rule's verdicts 102-103.
CONFIRMATION_SEED = 104
# A class default must forget classes it was not tuned on, on an original trained apart from the tuning
# settings (digits, its own memorising recipe), and the objective's classes at a tenth of their size
# (transfer_failures): the margin rule chooses among the candidates that pass both, else the first, else all
# (chosen_values).
# Ragged batches, as when the recorded verdicts (docs/TUNING.md) were made: the check is part of the rule.
TRANSFER_RECIPE = TrainRecipe(epochs=12, lr=TUNED_RECIPE_LR, batch_size=64, augment=False, batching="ragged")
TRANSFER_FORGET = ("class:3", "class:0")
# And on small classes: the objective's classes at a tenth of their size (small_transfer_workspace).
SMALL_TRANSFER_PER_CLASS = 100
SMALL_TRANSFER_FORGET = ("class:5", "class:2")
SMALL_TRANSFER_ORIGINAL = Path(__file__).resolve().parent.parent / "tuning" / "small_transfer_original.pt"
# The original of every tuning setting after the first (digits): the default recipe with ragged batches, as the
# store's studies and Retrain references were scored on it (a cached file trained another way is replaced).
SETTING_RECIPE = TrainRecipe(batching="ragged")
TRANSFER_MIN_UA = 95.0  # % of the forget class no longer recognised (Retrain: 100)
TRANSFER_MIN_RA = 95.0  # % of the retained images still right (the original: 100)
# The machine of the studies that began before each study recorded its own (all scored on one VM).
UNRECORDED_MACHINE = "one machine, not recorded (before 2026-11-28)"
# A study whose trials were scored on more than one machine: its gains pair with no other study's.
SEVERAL_MACHINES = "several machines"
# Under a cost cap, draws per trial budget before tuning gives up on a cap the search space hardly meets.
MAX_DRAWS_PER_TRIAL = 50
# Between the sampler seeds of two workers: far more than the trials a study holds, so their seeds never meet.
WORKER_SEED_STRIDE = 1_000_003


@dataclass
class TuneSetting:
    """One dataset with its original model: the objective averages over every setting."""

    name: str
    ws: Workspace


def tunable_methods(text: str) -> list[str]:
    """``all`` or a comma list; Retrain (the reference) and presets (they share a method's code) are not tuned."""
    names = method_names() if text.strip() == "all" else [m.strip() for m in text.split(",") if m.strip()]
    chosen = []
    for name in names:
        spec = get_method(name)
        if name == "retrain" or spec.preset_of is not None:
            if text.strip() != "all":
                raise WssclError(f"{spec.label} is not tuned: " + ("it is the reference." if name == "retrain" else
                                 f"it is a preset of {get_method(spec.preset_of).label}; tune that instead."))
            continue
        if not spec.config_cls.SEARCH_SPACE:
            raise WssclError(f"{spec.label} states no search space.")
        chosen.append(name)
    return chosen


def open_settings(datasets: list[str], checkpoint: str | None, cache_dir: Path, device: str = "auto",
                  data_root: str | None = None) -> list[TuneSetting]:
    """The tuning settings. The first dataset uses ``checkpoint`` (default: the shipped model); every other
    dataset gets an original trained with :data:`SETTING_RECIPE`, seed 0, cached in ``cache_dir``."""
    settings = []
    for i, name in enumerate(datasets):
        if i == 0:
            ws = open_workspace(checkpoint, name, device=device, data_root=data_root)
        else:
            cached = cache_dir / f"original_{name.replace(':', '_').replace('/', '_')}.pt"
            ws = cached_original(cached, load_dataset(name, root=data_root), SETTING_RECIPE, device)
        settings.append(TuneSetting(name, ws))
    return settings


def cached_original(path: Path, data: Dataset, recipe: TrainRecipe, device: str | torch.device) -> Workspace:
    """The compact-net original of ``data`` trained with ``recipe``, seed 0: read from ``path`` when the file holds
    that model, else trained and written there (replacing a file trained another way; a folder that cannot be
    written only loses the cache)."""
    if path.is_file():
        try:
            ws = open_workspace(path, data, device=device)
        except WssclError:  # another draw of the data, or not a checkpoint
            ws = None
        if ws is not None and (ws.model_name, ws.recipe, ws.metadata.get("method"), ws.metadata.get("seed")) == (
                "compact", recipe, "original", 0):
            return ws
    model, meta = train_original(data, "compact", recipe, seed=0, device=device)
    try:
        save_checkpoint(path, model, meta)
    except (OSError, WssclError):  # e.g. an installed, read-only copy: the run goes on with the model trained here
        pass
    on = pick_device(device) if isinstance(device, str) else device
    return Workspace(data.to(on), model, meta, "compact", recipe, on)


def machine_identity(device: torch.device) -> str:
    """The processor (or GPU) and PyTorch build a study is scored on. Runs repeat to the last digit only on
    the same one (oneDNN picks its kernels by instruction set: Avg.Gaps differ by up to 0.4 between two CPUs),
    so a round option's gain is paired only with studies scored on the same machine."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")] if cpuinfo.is_file() else []
        name = models[0] if models else (platform.processor() or platform.machine())
    return f"{name}; torch {torch.__version__}"


def record_machine(study: Any, device: torch.device) -> None:
    """Keep in ``study`` the machine its trials are scored on; one resumed on another becomes
    :data:`SEVERAL_MACHINES` (a warning says so)."""
    here = machine_identity(device)
    recorded = study.user_attrs.get("machine", UNRECORDED_MACHINE if study.trials else here)
    if recorded != here and recorded != SEVERAL_MACHINES:
        print(f"{study.study_name}: scored on {recorded}, now on {here}: its gains will pair with no other "
              "study's", file=sys.stderr, flush=True)
        recorded = SEVERAL_MACHINES
    study.set_user_attr("machine", recorded)


def scored_on(study: Any) -> str:
    """The machine a study's trials were scored on (:func:`record_machine`)."""
    return study.user_attrs.get("machine", UNRECORDED_MACHINE)


def round_options(plain_rounds: bool = False, schedule: str = "constant", lr_per_forget_sample: bool = False,
                  forget_pass_floor: bool = False) -> dict[str, Any]:
    """The round options that differ from :data:`BASE_ROUNDS` (empty for a method's main study)."""
    chosen = {"augment_rounds": not plain_rounds, "schedule": schedule, "lr_per_forget_sample": lr_per_forget_sample,
              "forget_pass_floor": forget_pass_floor}
    return {key: value for key, value in chosen.items() if value != BASE_ROUNDS[key]}


def every_round_options() -> list[dict[str, Any]]:
    """Every combination of round options, the base rounds first."""
    return [round_options(plain, schedule, per_sample, floor) for floor in (False, True)
            for per_sample in (False, True) for plain in (False, True) for schedule in get_args(Schedule)]


def rounds_label(options: dict[str, Any]) -> str:
    """How a study's rounds differ from the base ones, in words ("" for none)."""
    return ", ".join((["plain rounds"] if options.get("augment_rounds") is False else [])
                     + ([f"{options['schedule']} schedule"] if "schedule" in options else [])
                     + (["lr per forget sample"] if options.get("lr_per_forget_sample") else [])
                     + (["forget pass floor"] if options.get("forget_pass_floor") else []))


def study_name(method: str, forget: str, settings: list[TuneSetting], options: dict[str, Any] | None = None) -> str:
    label = rounds_label(options or {})
    return f"{method}|{forget}|{'+'.join(s.name for s in settings)}" + (f"|{label}" if label else "")


def has_rounds(method: str, options: dict[str, Any] | None = None) -> bool:
    """Whether the method trains in engine rounds, so it has round options (augmentation, schedule), and,
    when ``options`` count the learning rate per forget sample, rounds on D_f."""
    config = get_method(method).config_cls
    return issubclass(config, RoundsConfig) and not (options or {}).keys() & config.unusable_options()


def study_values(study: Any, trial: Any) -> dict[str, Any]:
    """The config values a study's trial ran with: its searched point, and the study's round options."""
    return {**trial.params, **study.user_attrs.get("round_options", {})}


def suggest(trial: Any, space: dict[str, SearchRange]) -> dict[str, Any]:
    """One trial's values from a config's search space."""
    values: dict[str, Any] = {}
    for name, rng in space.items():
        if isinstance(rng, FloatRange):
            values[name] = trial.suggest_float(name, rng.low, rng.high, log=rng.log)
        elif isinstance(rng, IntRange):
            values[name] = trial.suggest_int(name, rng.low, rng.high)
        elif isinstance(rng, Choice):
            values[name] = trial.suggest_categorical(name, list(rng.values))
        else:
            raise WssclError(f"Unknown search range {rng!r} for {name}.")
    return values


def _reference_scores(storage: Any, setting: TuneSetting, forget: str, seed: int,
                      cancel: CancelFlag | None) -> dict[str, float]:
    """Retrain's validation scores for one split, computed once and kept in the study store."""
    import optuna

    references = optuna.create_study(study_name=REFERENCES, storage=storage, load_if_exists=True)
    key = f"{setting.name}:{setting.ws.data.fingerprint()}:{forget}:{seed}:val"
    if key not in references.user_attrs:
        result = run(setting.ws, RunRequest.parse("retrain", forget, None, seed, "val"), cancel=cancel)
        references.set_user_attr(key, result.scores())
    return references.user_attrs[key]


def forget_sets(forget: str) -> list[str]:
    """The forget sets of a tuning objective: one (``random:0.1``), or several joined by ``+``
    (``random:0.1+random:0.5``) so that the chosen values must work for every one of them; all of one
    scenario, since the defaults are stored per scenario."""
    parts = [part.strip() for part in forget.split("+")]
    kinds = {ForgetSpec.parse(part).kind for part in parts}
    if len(kinds) > 1:
        raise WssclError(f"The forget sets of one tuning objective must all be random or all be classes, got {forget!r}.")
    return parts


def scenario_of(forget: str) -> str:
    """The scenario (random or class) whose defaults a study over ``forget`` chooses."""
    return ForgetSpec.parse(forget_sets(forget)[0]).kind


def _objective_points(forget: str, settings: list[TuneSetting], seeds: list[int]):
    """Every (key, forget set, setting, seed) the objective averages over."""
    several = len(forget_sets(forget)) > 1
    for forget_set in forget_sets(forget):
        for setting in settings:
            for seed in seeds:
                yield (f"{forget_set}:" if several else "") + f"{setting.name}:{seed}", forget_set, setting, seed


def original_gaps(storage: Any, settings: list[TuneSetting], forget: str, seeds: list[int],
                  cancel: CancelFlag | None = None) -> dict[str, float]:
    """The untouched original's Avg.Gap at every point of the tuning objective (keyed as a trial's ``gaps``):
    the row every trial has to beat, point by point as well as on the mean."""
    gaps = {}
    for key, forget_set, setting, seed in _objective_points(forget, settings, seeds):
        reference = _reference_scores(storage, setting, forget_set, seed, cancel)
        prepared = prepare(setting.ws, RunRequest.parse("retrain", forget_set, None, seed, "val"))
        gaps[key] = avg_gap(original_result(setting.ws, prepared.split, prepared.request).scores(), reference)
    return gaps


def objective_for(method: str, forget: str, settings: list[TuneSetting], seeds: list[int], storage: Any,
                  cancel: CancelFlag | None = None, options: dict[str, Any] | None = None) -> Callable[[Any], float]:
    """The Optuna objective: mean Avg.Gap to Retrain over every forget set, setting and tuning seed, on
    validation images. Rounds train as :data:`BASE_ROUNDS` with ``options`` on top, whatever the defaults
    file says, so a study's trials all run one way."""
    import optuna
    from optuna.trial import TrialState

    space = get_method(method).config_cls.SEARCH_SPACE
    cap = get_method(method).config_cls.COST_CAP

    rounds = {**BASE_ROUNDS, **(options or {})} if has_rounds(method) else {}

    def objective(trial: optuna.Trial) -> float:
        values = {**suggest(trial, space), **rounds}
        cost = trial_cost(method, values, forget, settings, seeds)
        if cost is not None:
            trial.set_user_attr("cost", cost)
        if cap is not None:
            trial.set_constraint("cost_over_cap", cost - cap)  # the sampler learns where the cap lies
            if cost > cap:  # not run: outside what the method may spend
                trial.set_user_attr("over_cap", True)
                return float("inf")
        study = getattr(trial, "study", None)  # an optuna.trial.FixedTrial (a point run by hand) has none
        earlier = _same_point(study, trial.params, trial.number) if study is not None else None
        if earlier is not None:  # runs are deterministic: a repeat would score the same and teach nothing
            trial.set_user_attr("repeat_of", earlier.number)
            if earlier.state != TrialState.COMPLETE:  # still running in another worker
                raise optuna.TrialPruned(f"repeats running trial {earlier.number}")
            return earlier.value
        gaps, scores = {}, {}
        try:
            for key, forget_set, setting, seed in _objective_points(forget, settings, seeds):
                reference = _reference_scores(storage, setting, forget_set, seed, cancel)
                # the searched learning rates are in the defaults' units: scaled to each setting's original
                scaled = scale_learning_rates(values, setting.ws.recipe.lr)
                result = run(setting.ws, RunRequest.parse(method, forget_set, scaled, seed, "val"), cancel=cancel)
                scores[key] = result.scores()
                gaps[key] = avg_gap(scores[key], reference)
        except RunCancelled:
            trial.study.stop()
            raise optuna.TrialPruned("stopped") from None
        except WssclError as exc:  # e.g. a diverged run: a bad point of the space, not a bad study
            trial.set_user_attr("error", str(exc))
            return float("inf")
        trial.set_user_attr("gaps", gaps)
        # every point's UA, RA, TA and MIA too, so a study can be re-read under another rule without running it again
        trial.set_user_attr("scores", scores)
        return float(sum(gaps.values()) / len(gaps))

    return objective


def trial_cost(method: str, values: dict[str, Any], forget: str, settings: list[TuneSetting],
               seeds: list[int]) -> float | None:
    """A trial's planned compute relative to Retrain's at the objective's first point (first forget set,
    setting and seed), or None when the method states no plan."""
    _, forget_set, setting, seed = next(_objective_points(forget, settings, seeds))
    scaled = scale_learning_rates(values, setting.ws.recipe.lr)
    return prepared_cost(setting.ws, prepare(setting.ws, RunRequest.parse(method, forget_set, scaled, seed, "val")))


def _default_trial(method: str, scenario: str) -> dict[str, Any]:
    """The current default of every searched field: trial 0 of a new study, so a default is only replaced
    by a point that beats it under the same protocol."""
    cfg = make_config(method, scenario=scenario)
    return {name: getattr(cfg, name) for name in get_method(method).config_cls.SEARCH_SPACE}


def _default_scored_or_queued(study: Any, default: dict[str, Any]) -> bool:
    """Whether the default's trial has finished or is still to run; one stopped before it finished is queued
    again, so every study scores the default it set out to beat."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    return any(t.user_attrs.get("default") or (t.params or t.system_attrs.get("fixed_params")) == default
               for t in study.get_trials(deepcopy=False, states=live))


def default_of(done: list[Any]) -> Any:
    """The finished trial that scored the default the study began with (the first trial in older studies)."""
    return next((t for t in done if t.user_attrs.get("default")), done[0] if done and done[0].number == 0 else None)


def open_storage(url: str) -> Any:
    """The study store for ``url``, with a heartbeat: a trial whose worker died (killed, machine lost) is
    marked failed after a grace period instead of staying "running" for ever."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)


def space_record(method: str) -> dict[str, str]:
    """A method's current search space as the study store records it."""
    return {k: repr(v) for k, v in get_method(method).config_cls.SEARCH_SPACE.items()}


def archive_if_space_changed(storage: Any, name: str, method: str) -> str | None:
    """A study begun over another search space than the method's config now states cannot be resumed
    (its trials were drawn elsewhere): it is kept for the record under a new name and the study starts
    afresh. Returns the archive's name, or None when nothing changed."""
    import optuna

    if name not in optuna.get_all_study_names(storage):
        return None
    if not _superseded(optuna.load_study(study_name=name, storage=storage)):
        return None
    taken = set(optuna.get_all_study_names(storage))
    archive = next(f"{name}|earlier space {i}" for i in range(1, len(taken) + 2) if f"{name}|earlier space {i}" not in taken)
    optuna.copy_study(from_study_name=name, from_storage=storage, to_storage=storage, to_study_name=archive)
    optuna.delete_study(study_name=name, storage=storage)
    return archive


def sampler_for(known: int, worker: int, trials: int) -> Any:
    """The TPE sampler of one process: its seed counts the trials already in the store, so a resumed study
    draws new points instead of repeating the first ones, and adds the worker's index, so workers started
    together on one store (which see the same count) do not draw the same points."""
    import optuna

    return optuna.samplers.TPESampler(seed=known + WORKER_SEED_STRIDE * worker, n_startup_trials=min(5, trials))


def tune_method(method: str, forget: str, settings: list[TuneSetting], trials: int, storage: Any,
                seeds: list[int], cancel: CancelFlag | None = None,
                on_trial: Callable[[str, int, int, float, float, float], None] | None = None,
                worker: int = 0, options: dict[str, Any] | None = None) -> Any:
    """Run ``method``'s study until it holds ``trials`` finished trials (resumable: finished ones count).
    ``worker`` numbers the processes sharing the store (0 for the first). With round ``options``
    (:func:`round_options`) the study is a separate one whose rounds train so; its first trial is the current
    default."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scenario = scenario_of(forget)
    if options and not has_rounds(method, options):
        raise WssclError(f"{get_method(method).label} trains in no rounds"
                         + (" on the forget set" if has_rounds(method) else "")
                         + f", so it has no {rounds_label(options)} variant.")
    name = study_name(method, forget, settings, options)
    archived = archive_if_space_changed(storage, name, method)
    if archived is not None:
        print(f"{get_method(method).label}: the search space changed; the earlier study is kept as {archived!r}",
              file=sys.stderr, flush=True)
    known = len(optuna.load_study(study_name=name, storage=storage).trials) if name in optuna.get_all_study_names(
        storage) else 0
    cap = get_method(method).config_cls.COST_CAP
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                sampler=sampler_for(known, worker, trials))
    study.set_user_attr("method", method)
    study.set_user_attr("forget", forget)
    study.set_user_attr("settings", [s.name for s in settings])
    study.set_user_attr("seeds", seeds)
    study.set_user_attr("space", space_record(method))
    study.set_user_attr("budget", trials)  # the report chooses within this many trials, as --write-defaults did
    if options:
        study.set_user_attr("round_options", options)
    if cap is not None:
        study.set_user_attr("cost_cap", cap)
    default = _default_trial(method, scenario)
    if not _default_scored_or_queued(study, default):
        study.enqueue_trial(default, user_attrs={"default": True})
    if "original_gaps" not in study.user_attrs:  # studies begun before it was kept per point get it on resume
        untouched = original_gaps(storage, settings, forget, seeds, cancel)
        study.set_user_attr("original_gaps", untouched)
        study.set_user_attr("original_gap", sum(untouched.values()) / len(untouched))
    started = time.perf_counter()

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Report a trial that ran; stop every worker once the study holds its budget of them."""
        if trial.state != TrialState.COMPLETE or trial.user_attrs.get("over_cap") or "repeat_of" in trial.user_attrs:
            return
        done = first_finished(study, trials)
        if on_trial is not None:
            on_trial(method, len(done), trials, trial.value, min(t.value for t in done), time.perf_counter() - started)
        if len(done) >= trials:
            study.stop()

    objective = objective_for(method, forget, settings, seeds, storage, cancel, options)
    if len(first_finished(study, trials)) < trials:
        record_machine(study, settings[0].ws.device)
    draws = 0
    while (remaining := trials - len(first_finished(study, trials))) > 0:
        check_cancel(cancel)
        if draws > MAX_DRAWS_PER_TRIAL * trials:
            raise WssclError(f"{get_method(method).label}: {draws} points drawn, too few new ones"
                             + (f" within its cost cap ({cap:g} of Retrain's compute)" if cap is not None else "")
                             + "; widen the search space" + (" or the cap." if cap is not None else "."))
        # points over a cost cap or repeating an earlier one are not run and do not count, so a round may
        # end short of the budget
        before = len(study.trials)
        study.optimize(objective, n_trials=remaining, callbacks=[report])
        draws += len(study.trials) - before
    return study


def first_finished(study: Any, budget: int) -> list[Any]:
    """The study's first ``budget`` finished trials at distinct points, by trial number: the ones a choice
    within the budget sees.

    A study may hold more trials than the budget a comparison uses (the budget was lowered, or one method
    was explored further); only the first ``budget`` count, so every method is chosen with the same budget.
    Points drawn over a method's cost cap were never run and do not count, and neither does a point that
    repeats an earlier trial's (it adds nothing to the search), so every budget is one of distinct points.
    """
    from optuna.trial import TrialState

    ran = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if not t.user_attrs.get("over_cap")), key=lambda t: t.number)
    seen: list[dict[str, Any]] = []
    distinct = []
    for trial in ran:
        if trial.params not in seen:
            seen.append(trial.params)
            distinct.append(trial)
    return distinct[:budget]


def _same_point(study: Any, params: dict[str, Any], number: int) -> Any:
    """The earliest other trial, finished or still running, that ran or runs at ``params`` (None if none)."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.RUNNING)
    return next((t for t in sorted(study.get_trials(deepcopy=False, states=live), key=lambda t: t.number)
                 if t.number != number and t.params == params and not t.user_attrs.get("over_cap")
                 and "repeat_of" not in t.user_attrs), None)


def best_trial(study: Any, budget: int) -> Any:
    """The best of the study's first ``budget`` finished trials (None when none has a finite value)."""
    finite = [t for t in first_finished(study, budget) if t.value is not None and math.isfinite(t.value)]
    return min(finite, key=lambda t: t.value) if finite else None


def paired_gain(base: dict[str, float], variant: dict[str, float]) -> tuple[float, float] | None:
    """A variant's mean gain over the base (lower Avg.Gap is a gain) at the objective's points both scored
    (forget set, setting, seed), and its standard error; None with fewer than two points (no noise estimate)."""
    points = sorted(base.keys() & variant.keys())
    if len(points) < 2:
        return None
    gains = [base[p] - variant[p] for p in points]
    mean = sum(gains) / len(gains)
    spread = math.sqrt(sum((g - mean) ** 2 for g in gains) / (len(gains) - 1))
    return mean, spread / math.sqrt(len(gains))


def margin_for(points: int) -> float:
    """The standard errors a paired gain over ``points`` points must exceed: :data:`MARGIN_STANDARD_ERRORS`
    from :data:`MARGIN_POINTS` points on, and with fewer the Student-t value that leaves noise alone the same
    one-sided chance of clearing it (7.4 at two points, 3.2 at three), so few points are held to the same bar."""
    from scipy import stats

    if points >= MARGIN_POINTS:
        return MARGIN_STANDARD_ERRORS
    chance = stats.t.sf(MARGIN_STANDARD_ERRORS, MARGIN_POINTS - 1)
    return float(stats.t.isf(chance, points - 1))


def clear_gain(base: dict[str, float], variant: dict[str, float]) -> bool:
    """Whether a round-option variant beats the base by more than the objective's noise: its paired mean gain
    (:func:`paired_gain`) exceeds :func:`margin_for` standard errors. A gain inside that noise is as likely to
    reverse on other splits as to hold, so the base stays; with a single point there is no noise estimate,
    and the base stays too."""
    gain = paired_gain(base, variant)
    return gain is not None and gain[0] > margin_for(len(base.keys() & variant.keys())) * gain[1]


@dataclass
class Evidence:
    """A chosen point as scored on one machine: the objective's value there, and per point (the objective's,
    with any pooled fresh points) its Avg.Gap and, where the trial recorded them, its scores."""

    value: float
    gaps: dict[str, float]
    scores: dict[str, dict[str, float]]


def differing_points(part: Evidence, variant: Evidence) -> list[str]:
    """The points both scored where the two runs may differ. Runs repeat to the last digit on one machine, so
    a point where both trials recorded the same scores (the loss attack's AUC among them, which ranks every
    forget and held-out loss) is one computation twice (a forget pass floor on a forget set of 1,000 images or
    more changes nothing): it says nothing of the variant, and would only dilute its gains with zeros. A point
    either trial kept no scores for counts as differing, as every point did before trials kept them."""
    def same(point: str) -> bool:
        return point in part.scores and point in variant.scores and part.scores[point] == variant.scores[point]

    return [p for p in sorted(part.gaps.keys() & variant.gaps.keys()) if not same(p)]


def gaps_where_runs_differ(part: Evidence, variant: Evidence) -> tuple[dict[str, float], dict[str, float]]:
    """Both Avg.Gaps at the points where the two runs differ (:func:`differing_points`): what the rule pairs."""
    points = differing_points(part, variant)
    return {p: part.gaps[p] for p in points}, {p: variant.gaps[p] for p in points}


def clearly_beats(variant: Evidence, part: Evidence) -> bool:
    """Whether a round-option variant scores lower than another study's chosen point on the objective and
    beats it by a clear margin (:func:`clear_gain`) over the points where their runs differ
    (:func:`gaps_where_runs_differ`), both as scored on one machine (see :func:`round_option_evidence`)."""
    return variant.value < part.value and clear_gain(*gaps_where_runs_differ(part, variant))


def round_option_studies(storage: Any, method: str, forget: str,
                         settings: list[TuneSetting]) -> list[tuple[dict[str, Any], Any, Any]]:
    """The method's studies on this objective, one per round options (the base rounds first), that are in the
    store and finished within their budget, each as (round options, study, best trial)."""
    import optuna

    names = set(optuna.get_all_study_names(storage))
    found = []
    for options in every_round_options():
        name = study_name(method, forget, settings, options)
        if name not in names:
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        own = study_budget(study, 1)
        best = best_trial(study, own)
        if best is not None and len(first_finished(study, own)) >= own:
            found.append((options, study, best))
    return found


def confirmation_name(study_name: str) -> str:
    """The study that scores ``study_name``'s chosen point on fresh points (:func:`confirm_round_options`)."""
    return f"{study_name}|confirmation"


def confirmed_score(confirmation: Any, best: Any) -> Any:
    """The confirmation study's finished trial at ``best``'s point, or None: a study searched further after
    its confirmation may have another best, and fresh points scored for an earlier one say nothing of it."""
    return next((t for t in first_finished(confirmation, len(confirmation.trials)) if t.params == best.params), None)


def rescore_name(study_name: str, machine: str) -> str:
    """The study that scores ``study_name``'s chosen point again on ``machine`` (:func:`rescore_parts`)."""
    return f"{study_name}|on {machine}"


@dataclass
class Candidate:
    """One of a method's round-option studies with the evidence its choice is judged on: per machine, the
    objective's value at its chosen point and the per-point Avg.Gaps (the objective's, pooled with its
    confirmation's fresh points where every candidate has them). ``machine`` is the study's own evidence's
    (:data:`SEVERAL_MACHINES` where its confirmation was scored elsewhere); the others come from
    :func:`rescore_parts`."""

    options: dict[str, Any]
    study: Any
    best: Any
    machine: str
    by_machine: dict[str, Evidence]

    @property
    def gaps(self) -> dict[str, float]:
        """The per-point Avg.Gaps of the study's own evidence."""
        return self.by_machine[self.machine].gaps


def _by_machine(storage: Any, names: set[str], study: Any, trial: Any) -> dict[str, Any]:
    """``trial``'s point as ``study`` scored it (``trial``) and as each rescore of ``study`` scored it again
    (:func:`rescore_parts`), by machine; the study's own first."""
    import optuna

    scored = {scored_on(study): trial}
    prefix = rescore_name(study.study_name, "")
    for name in sorted(n for n in names if n.startswith(prefix)):
        rescore = optuna.load_study(study_name=name, storage=storage)
        again = confirmed_score(rescore, trial)
        if again is not None:
            scored.setdefault(scored_on(rescore), again)
    return scored


def round_option_evidence(storage: Any, method: str, forget: str, settings: list[TuneSetting]) -> list[Candidate]:
    """:func:`round_option_studies`, each with the per-point Avg.Gaps its choice is judged on, per machine:
    the objective's points, pooled with the fresh points of its confirmation study when every candidate of the
    method has one (paired gains need the same points for all). Evidence on a machine other than the study's
    own comes from rescores of the study and of its confirmation there (:func:`rescore_parts`)."""
    import optuna

    names = set(optuna.get_all_study_names(storage))
    candidates = round_option_studies(storage, method, forget, settings)
    confirmations = []
    for _, study, best in candidates:
        name = confirmation_name(study.study_name)
        confirmation = optuna.load_study(study_name=name, storage=storage) if name in names else None
        scored = confirmed_score(confirmation, best) if confirmation is not None else None
        confirmations.append((confirmation, scored))
    pooled = all(scored is not None for _, scored in confirmations)
    found = []
    for (options, study, best), (confirmation, confirmed) in zip(candidates, confirmations):
        fresh = _by_machine(storage, names, confirmation, confirmed) if pooled else {}

        def evidence(trial: Any, extra: Any) -> Evidence:
            """``trial``'s objective points, with ``extra``'s fresh points where the candidates pool them."""
            trials = [trial] + ([extra] if pooled else [])
            return Evidence(trial.value, {k: v for t in trials for k, v in t.user_attrs.get("gaps", {}).items()},
                            {k: v for t in trials for k, v in t.user_attrs.get("scores", {}).items()})

        machine = scored_on(study)
        if pooled and scored_on(confirmation) != machine:  # its own evidence pools its own confirmation
            machine = SEVERAL_MACHINES
        by_machine = {machine: evidence(best, confirmed)}
        for where, trial in _by_machine(storage, names, study, best).items():
            if where in by_machine or where == SEVERAL_MACHINES or (pooled and where not in fresh):
                continue
            by_machine[where] = evidence(trial, fresh.get(where))
        found.append(Candidate(options, study, best, machine, by_machine))
    return found


def common_machine(candidate: Candidate, other: Candidate) -> str | None:
    """The machine on which both candidates' evidence was scored (``candidate``'s own where both were), or None."""
    shared = sorted(m for m in candidate.by_machine.keys() & other.by_machine.keys() if m != SEVERAL_MACHINES)
    return candidate.machine if candidate.machine in shared else (shared[0] if shared else None)


def _parts(candidate: Candidate, candidates: list[Candidate]) -> list[Candidate]:
    """The other candidates whose round options are a part of ``candidate``'s (the base is part of every one)."""
    return [c for c in candidates if c.best is not candidate.best and c.options.items() <= candidate.options.items()]


def chosen_values(storage: Any, method: str, forget: str, settings: list[TuneSetting],
                  on_refused: Callable[[str], None] | None = None) -> tuple[dict[str, Any], float] | None:
    """A method's values for the defaults file and their score: the best of its study within its budget, or of
    a round-option variant (:func:`round_options`) whose study is in the store and finished. A variant scores
    the chosen point again with other round options, one extra trial that every method with rounds gets
    alike. It is chosen only if it scores lower on the objective than, and beats by a clear margin
    (:func:`clear_gain`, over the objective's points and any confirmation's fresh points), the base and every
    variant whose options are a part of its own (plain rounds and a cosine schedule must each clearly add to
    the other): the lowest variant that does, else the base (:func:`margin_choice`). On class forgetting a
    default must also forget the classes of :func:`transfer_failures` and keep D_r there: every candidate is
    run on them (``on_refused`` hears of every failure), and the margin rule chooses among those that pass
    every check, else among those that pass the first (digits), else among all. A variant is
    compared with each part on a machine both were scored on (:func:`scored_on`, or scored again there by
    :func:`rescore_parts`), values and points alike; one that scores lower than a part scored only elsewhere
    is not eligible, and ``on_refused`` hears of it. None if no study has a finite best."""
    candidates = round_option_evidence(storage, method, forget, settings)
    if not candidates:
        return None
    pool = candidates
    if scenario_of(forget) == "class":
        rounds = BASE_ROUNDS if has_rounds(method) else {}  # as the objective ran them, whatever the file holds
        passed = []
        for candidate in candidates:  # told as each is run: a few minutes per method
            failures = transfer_failures(method, {**rounds, **study_values(candidate.study, candidate.best)})
            passed.append(checks_passed_in_order(failures))
            if any(failures) and on_refused is not None:
                on_refused(f"{study_label(candidate.study)}: on the transfer originals it leaves "
                           f"{'; '.join(f for check in failures for f in check)} (needs UA > {TRANSFER_MIN_UA:g} "
                           f"and RA > {TRANSFER_MIN_RA:g})")
        pool = [c for c, checks in zip(candidates, passed) if checks == max(passed)]
    chosen = margin_choice(pool, on_refused)
    return study_values(chosen.study, chosen.best), chosen.best.value


def margin_choice(pool: list[Candidate], on_refused: Callable[[str], None] | None = None) -> Candidate:
    """The candidate of ``pool`` the margin rule keeps: the lowest-scoring one that clearly beats every other
    one of ``pool`` whose options are a part of its own, on a machine both were scored on; one with no such
    part (the base, where ``pool`` has it) always does, and the base comes last."""

    def beats_its_parts(candidate: Candidate) -> bool:
        for part in _parts(candidate, pool):
            machine = common_machine(candidate, part)
            if machine is None:
                if on_refused is not None and candidate.best.value < part.best.value:
                    on_refused(f"{study_label(candidate.study)}: not compared with {study_label(part.study)}, as the "
                               f"two were scored on different machines ({candidate.machine}; {part.machine}): score "
                               "both on one (tune --rescore)")
                return False
            if not clearly_beats(candidate.by_machine[machine], part.by_machine[machine]):
                return False
        return True

    return min((c for c in pool if beats_its_parts(c)), key=lambda c: (not c.options, c.best.value))


@functools.lru_cache(maxsize=1)
def transfer_workspace() -> Workspace:
    """The original class defaults are checked on: digits trained with :data:`TRANSFER_RECIPE` (no
    augmentation, so it memorises as the tuning originals do, but with other epochs and batches), on the CPU."""
    data = load_dataset("digits")
    model, meta = train_original(data, "compact", TRANSFER_RECIPE, seed=0, device="cpu")
    return Workspace(data, model, meta, "compact", TRANSFER_RECIPE, torch.device("cpu"))


def small_transfer_data() -> Dataset:
    """:data:`SMALL_TRANSFER_PER_CLASS` train images per class of the shipped subset (a fixed draw), with its
    test and validation images."""
    subset = load_default_subset()
    draw = torch.Generator().manual_seed(0)
    labels = subset.train.labels
    picked = torch.cat([members[torch.randperm(len(members), generator=draw)[:SMALL_TRANSFER_PER_CLASS]]
                        for members in (torch.nonzero(labels == c).flatten() for c in range(subset.num_classes))])
    return dataclasses.replace(subset, name=f"{subset.name}-{SMALL_TRANSFER_PER_CLASS}-per-class",
                               train=subset.train.subset(picked.sort().values), mean=(), std=())


@functools.lru_cache(maxsize=1)
def small_transfer_workspace() -> Workspace:
    """The second original class defaults are checked on: :func:`small_transfer_data` trained with the default
    recipe, seed 0, on the CPU. Its classes are a tenth of the objective's, so a stage that counts passes over
    D_f gets a tenth of the steps; the validation images score it, as they score the tuning runs.

    The original ships as :data:`SMALL_TRANSFER_ORIGINAL`: every machine checks the same weights (training
    repeats them only on the same CPU and thread count) without training them again. A file that does not
    hold this data and recipe is trained again and replaced."""
    return cached_original(SMALL_TRANSFER_ORIGINAL, small_transfer_data(), TrainRecipe(), "cpu")


def transfer_failures(method: str, values: dict[str, Any]) -> list[list[str]]:
    """Where ``method`` with class-forgetting ``values`` does not transfer, per check in the order they were
    added: :data:`TRANSFER_FORGET` on the :func:`transfer_workspace` original, then
    :data:`SMALL_TRANSFER_FORGET` on the :func:`small_transfer_workspace` one (split seed 0, validation
    images). Each lists the forget sets where UA or RA is not above the bound, as text ("digits class:3 UA
    82.7, RA 99.4"); all empty when it forgets every one and keeps D_r."""
    checks = []
    for ws, forget_sets_there in ((transfer_workspace(), TRANSFER_FORGET),
                                  (small_transfer_workspace(), SMALL_TRANSFER_FORGET)):
        failures = []
        for forget in forget_sets_there:
            request = RunRequest.parse(method, forget, scale_learning_rates(values, ws.recipe.lr), 0, "val")
            scores = run(ws, request).scores()
            if scores["UA"] <= TRANSFER_MIN_UA or scores["RA"] <= TRANSFER_MIN_RA:
                failures.append(f"{ws.data.name} {forget} UA {scores['UA']:.1f}, RA {scores['RA']:.1f}")
        checks.append(failures)
    return checks


def checks_passed_in_order(failures: list[list[str]]) -> int:
    """How many of the transfer checks, in their order, a candidate passes before its first failure."""
    return next((i for i, failed in enumerate(failures) if failed), len(failures))


def confirm_round_options(storage: Any, method: str, forget: str, settings: list[TuneSetting], fresh: str,
                          seeds: list[int], cancel: CancelFlag | None = None,
                          on_scored: Callable[[Any, Any], None] | None = None) -> list[Any]:
    """Score the chosen point of each of the method's round-option studies on fresh points (forget sets
    ``fresh``, split seeds ``seeds``, validation images), one study each (:func:`confirmation_name`;
    resumable), so that :func:`chosen_values` judges the variants over more points than the objective's
    eight. Only where a variant scores lower than the base on the objective: elsewhere none can be chosen.
    ``on_scored`` gets each confirmation study, with its trial at the chosen point, once it is scored. Returns
    the confirmation studies."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if seeds[0] < TUNING_SEED or (set(forget_sets(fresh)) & set(forget_sets(forget)) and seeds[0] < CONFIRMATION_SEED):
        raise WssclError(f"Confirmation points must be fresh: split seeds from {CONFIRMATION_SEED} (from "
                         f"{TUNING_SEED} on other classes than the objective's), never a reported seed.")
    if scenario_of(fresh) != scenario_of(forget):
        raise WssclError(f"Confirm {forget} on forget sets of the same scenario, got {fresh!r}.")
    candidates = round_option_studies(storage, method, forget, settings)
    base = next((best for options, _, best in candidates if not options), None)
    if base is None or not any(best.value < base.value for options, _, best in candidates if options):
        return []
    confirmations = []
    untouched: dict[str, float] = {}
    for options, study, best in candidates:
        confirmation = optuna.create_study(study_name=confirmation_name(study.study_name), storage=storage,
                                           load_if_exists=True, direction="minimize")
        for key, value in {"method": method, "forget": fresh, "settings": [s.name for s in settings],
                           "seeds": seeds, "confirms": study.study_name, "round_options": options}.items():
            confirmation.set_user_attr(key, value)
        if "original_gaps" not in confirmation.user_attrs:
            untouched = untouched or original_gaps(storage, settings, fresh, seeds, cancel)
            confirmation.set_user_attr("original_gaps", untouched)
            confirmation.set_user_attr("original_gap", sum(untouched.values()) / len(untouched))
        if confirmed_score(confirmation, best) is None:
            record_machine(confirmation, settings[0].ws.device)
            confirmation.enqueue_trial(best.params)
            confirmation.optimize(objective_for(method, fresh, settings, seeds, storage, cancel, options), n_trials=1)
            check_cancel(cancel)
        if on_scored is not None:
            on_scored(confirmation, confirmed_score(confirmation, best))
        confirmations.append(confirmation)
    return confirmations


def rescore_parts(storage: Any, method: str, forget: str, settings: list[TuneSetting],
                  cancel: CancelFlag | None = None, on_scored: Callable[[Any, Any], None] | None = None) -> list[Any]:
    """Score again on this machine each chosen point that a round-option variant scored here is judged against
    but that was scored on another machine (the base, and each variant whose options are a part of its own),
    together with its confirmation's fresh points where it has them: one study each (:func:`rescore_name`;
    resumable), so that :func:`chosen_values` pairs them on one machine. Runs repeat to the last digit only on
    one machine, so this is the only fair comparison between studies scored apart. ``on_scored`` gets each
    rescore study and its trial. Returns the rescore studies."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = settings[0].ws.device
    here = machine_identity(device)
    candidates = round_option_evidence(storage, method, forget, settings)
    variants_here = [c for c in candidates if c.options and (here in c.by_machine or scored_on(c.study) == here)]
    needed = {c.study.study_name: c for variant in variants_here for c in [variant, *_parts(variant, candidates)]
              if here not in c.by_machine}
    names = set(optuna.get_all_study_names(storage))
    rescores = []
    for candidate in needed.values():
        sources = [candidate.study]
        if confirmation_name(candidate.study.study_name) in names:
            sources.append(optuna.load_study(study_name=confirmation_name(candidate.study.study_name), storage=storage))
        for source in sources:
            scored = confirmed_score(source, candidate.best)
            if scored is None:
                continue
            attrs = source.user_attrs
            if attrs.get("settings") != [s.name for s in settings]:
                raise WssclError(f"{source.study_name} was scored on settings {attrs.get('settings')}; rescore it "
                                 f"with --datasets {','.join(attrs.get('settings', []))}.")
            if scored_on(source) == here:  # its confirmation may have been scored here in the first place
                continue
            rescore = optuna.create_study(study_name=rescore_name(source.study_name, here), storage=storage,
                                          load_if_exists=True, direction="minimize")
            if confirmed_score(rescore, candidate.best) is None:
                for key in ("method", "forget", "settings", "seeds", "round_options"):
                    if key in attrs:
                        rescore.set_user_attr(key, attrs[key])
                rescore.set_user_attr("rescores", source.study_name)
                rescore.set_user_attr("recorded_value", scored.value)
                record_machine(rescore, device)
                rescore.enqueue_trial(candidate.best.params)
                rescore.optimize(objective_for(method, attrs["forget"], settings, attrs["seeds"], storage, cancel,
                                               candidate.options), n_trials=1)
                check_cancel(cancel)
            if on_scored is not None:
                on_scored(rescore, confirmed_score(rescore, candidate.best))
            rescores.append(rescore)
    return rescores


def write_defaults(chosen: dict[str, dict[str, Any]], scenario: str, path: Path = DEFAULTS_FILE) -> None:
    """Store the chosen values of each method for ``scenario`` in the defaults file the configs read."""
    document = json.loads(path.read_text())
    for method, values in chosen.items():
        make_config(method, values, scenario)  # refuse values no config would accept, before writing
        document.setdefault("methods", {}).setdefault(method, {})[scenario] = values
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def study_budget(study: Any, default: int) -> int:
    """The trial budget a study was last run with (``tune --trials``), or ``default`` if it recorded none."""
    return int(study.user_attrs.get("budget", default))


def tuning_report(storage: Any, budget: int) -> str:
    """docs/TUNING.md, generated from the study store: per study its space, trials, and the best of the first
    finished trials within its budget (the equal budget the defaults were chosen with); ``budget`` stands for
    studies that recorded none."""
    import optuna
    from optuna.trial import TrialState

    lines = ["# Tuning", "",
             "Generated by `python -m wsscl_core tune --report docs/TUNING.md` from the study store; do not edit.",
             "Every method gets the same number of trials over the search space its config states. A trial's value",
             "is the mean Avg.Gap to Retrain over the tuning settings and split seeds (from "
             f"{TUNING_SEED}, never a reported seed), scored on validation images, never the reported test set.",
             "Every study first scores the default at the time it began (queued again if stopped).",
             "Rounds augment their batches at a constant learning rate in every study except those marked with other",
             "round options ((plain rounds): no augmentation; (cosine schedule): the learning rate decays to 0 over",
             "each phase; (lr per forget sample): phases on D_f scale their rate by 0.1 / the forget set's share of",
             "the train split; (forget pass floor): phases on D_f take at least the forget steps per epoch of a pass",
             "over 1,000 images, repeating their epochs): each scores a method's chosen point once more with them",
             "(`tune --plain-rounds --trials 1`, `tune --schedule cosine --trials 1`, `tune --lr-per-forget-sample",
             "--trials 1`, `tune --forget-pass-floor --trials 1`, or together), one extra trial every method with",
             "rounds (on D_f, for the last two) gets alike.",
             "The defaults file keeps a variant only if it beats the base, and each variant whose options are part of",
             f"its own, by more than {MARGIN_STANDARD_ERRORS:g} standard errors of its gains over the objective's points (paired",
             "by split), and among those the lowest: a smaller gain is inside the objective's noise. Where a variant",
             "scores lower than the base, `tune --confirm-on` scores every round option of the method on fresh points",
             f"(split seeds from {CONFIRMATION_SEED}, other classes), and the margin is then judged over both sets of points.",
             "On class forgetting a default must also forget classes it was not tuned on, with UA and RA above",
             f"{TRANSFER_MIN_UA:g} %, on two originals trained apart: digits with its own memorising recipe "
             f"({' and '.join(TRANSFER_FORGET)}), and",
             f"{SMALL_TRANSFER_PER_CLASS} train images per class of the subset ({' and '.join(SMALL_TRANSFER_FORGET)}, "
             f"a tenth of the objective's classes; its original ships as tuning/{SMALL_TRANSFER_ORIGINAL.name}, so",
             "every machine checks the same weights); every candidate is run there, and the rule above chooses among",
             "those that pass both, else among those that pass the digits one, else among all (`tune --write-defaults`",
             "prints each failure). Runs repeat to the last digit only on one machine, so",
             "each study records the machine it was scored on, and a variant is compared only with studies scored on the",
             "same one, or scored again there (`tune --rescore`: the chosen point, and its confirmation's points, once",
             "more on the variant's machine). A point where the two runs scored the same to the last digit (loss-attack",
             "AUC included) is one computation twice and is left out of the pairing; judged on fewer than",
             f"{MARGIN_POINTS} points, a gain must clear the Student-t value with the same chance as {MARGIN_STANDARD_ERRORS:g} "
             f"standard errors over {MARGIN_POINTS} (7.4 at two points).",
             "The chosen values are the best of each study's first finished trials within its budget (`tune --trials`, the same for every method of a",
             "scenario; given with each study and ranking below). Learning rates are",
             f"in the defaults file's units: for an original trained at learning rate {TUNED_RECIPE_LR:g}; a run",
             "on an original trained at another rate scales them by the same factor.", ""]
    summaries = sorted((s for s in optuna.get_all_study_summaries(storage) if s.study_name != REFERENCES),
                       key=lambda s: s.study_name)
    studied = {s.user_attrs.get("method") for s in summaries}
    untuned = [get_method(m).label for m in tunable_methods("all") if m not in studied]
    if untuned:
        lines += [f"No study yet (their config's defaults stand): {', '.join(untuned)}.", ""]
    loaded = [optuna.load_study(study_name=s.study_name, storage=storage) for s in summaries]
    studies = [s for s in loaded if "confirms" not in s.user_attrs and "rescores" not in s.user_attrs]
    current = [s for s in studies if not _superseded(s)]
    lines += _ranking(current, budget)
    lines += _confirmations([s for s in loaded if "confirms" in s.user_attrs])
    lines += _rescores([s for s in loaded if "rescores" in s.user_attrs])
    evidence: dict[tuple, list[Candidate]] = {}  # round_option_evidence per method and objective, loaded once
    for study in current + [s for s in studies if _superseded(s)]:
        attrs = study.user_attrs
        method = attrs.get("method", study.study_name)
        done = first_finished(study, len(study.trials))
        cap = attrs.get("cost_cap")
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        over = sum(1 for t in finished if t.user_attrs.get("over_cap"))
        repeats = len(finished) - over - len(done)
        lines += [f"## {study_label(study)} — forget {attrs.get('forget')}"
                  + (" — earlier search space, kept for the record" if _superseded(study) else ""), "",
                  f"Settings: {', '.join(attrs.get('settings', []))}; split seeds {attrs.get('seeds')}; "
                  f"{len(done)} finished {'trial' if len(done) == 1 else 'trials'} at distinct points."
                  + (f" {repeats} more repeated an earlier trial's point (not counted)." if repeats else "")
                  + (f" Cost cap: {cap:g} of Retrain's compute at the first forget set; {over} points drawn "
                     "over it were not run and do not count." if cap is not None else "")
                  + f" Scored on {scored_on(study)}.",
                  "", "| field | search range | old default | best |", "|---|---|---|---|"]
        default = default_of(done)
        first = default.params if default else {}
        own = study_budget(study, budget)
        best = best_trial(study, own)
        for name, rng in attrs.get("space", {}).items():
            lines.append(f"| {name} | {rng} | {_fmt(first.get(name))} | {_fmt(best.params.get(name)) if best else '—'} |")
        if _superseded(study):
            lines += ["", "Its search space is not the one the method's config states now; its values are not used"
                      + (f" (best of its first {own}: {best.value:.3f})." if best is not None else ".")]
        elif len(done) < own:
            lines += ["", f"Incomplete: {len(done)} of {own} trials finished, so its best is not used as a default."]
        elif best is not None:
            untouched = attrs.get("original_gap")
            scenario = scenario_of(attrs.get("forget"))
            in_file = tuned_defaults(method, scenario)
            source = ("this study's best" if in_file == study_values(study, best)
                      else f"not this study's best: the {scenario} defaults come from another study")
            lines += ["", f"Mean Avg.Gap: untouched original {_fmt(untouched)}, "
                      f"old default {_fmt(default.value if default else None)}, "
                      f"best of the first {own} {best.value:.3f} "
                      f"(trial {best.number}"
                      + (f", planned compute {best.user_attrs['cost']:.3f} of Retrain's" if "cost" in best.user_attrs
                         else "") + "). "
                      f"Defaults file now: {in_file or 'dataclass defaults'} ({source})."]
            lines += _per_point(best, attrs.get("original_gaps", {}))
            if attrs.get("round_options"):
                group = (method, attrs.get("forget"), tuple(attrs.get("settings", [])))
                if group not in evidence:
                    evidence[group] = round_option_evidence(storage, method, group[1],
                                                            [TuneSetting(name, None) for name in group[2]])
                lines += _gains_over_parts(study, evidence[group])
        lines.append("")
    return "\n".join(lines)


def _gains_over_parts(study: Any, candidates: list[Candidate]) -> list[str]:
    """For a round-option variant: its paired gain over the base study and over each variant whose options are
    part of its own, on the points and the machine the margin rule judges them on (``candidates``, its method's
    :func:`round_option_evidence`), with its verdict (:func:`chosen_values`)."""
    own = next((c for c in candidates if c.study.study_name == study.study_name), None)
    if own is None:
        return []
    verdicts = []
    for part in _parts(own, candidates):
        machine = common_machine(own, part)
        mine, theirs = (own.by_machine[own.machine], part.by_machine[part.machine]) if machine is None else (
            own.by_machine[machine], part.by_machine[machine])
        their_gaps, my_gaps = gaps_where_runs_differ(theirs, mine)
        points = sorted(my_gaps)
        gain = paired_gain(their_gaps, my_gaps)
        where = "" if len(points) == len(own.gaps) else f" on the {len(points)} points where the runs differ"
        label = rounds_label(part.options) or "the base rounds"
        if gain is None:  # no noise estimate: not clear
            verdicts.append(f"over {label}: the same runs at every point" if not points else
                            f"over {label} {their_gaps[points[0]] - my_gaps[points[0]]:+.3f} at the one point "
                            "where the runs differ (no clear gain)")
            continue
        if machine is None:
            verdict = "not compared: scored on another machine"
        else:
            verdict = "a clear gain" if clearly_beats(mine, theirs) else "no clear gain"
            if len(points) < MARGIN_POINTS:
                verdict += f", clear above {margin_for(len(points)):.1f} standard errors"
            if not machine == own.machine == part.machine:
                verdict += f", both scored on {machine}"
        verdicts.append(f"over {label} {gain[0]:+.3f} ± {gain[1]:.3f}{where} ({verdict})")
    points = len(own.gaps)
    fresh = points > len(own.best.user_attrs.get("gaps", {}))
    return ["", f"Paired gain per point (mean ± standard error over {points} points"
            + (", the objective's and its confirmation's" if fresh else "")
            + f"; clear above {MARGIN_STANDARD_ERRORS:g} standard errors): " + "; ".join(verdicts) + "."] if verdicts else []


def _rescores(studies: list[Any]) -> list[str]:
    """One table of the chosen points scored again on another machine (:func:`rescore_parts`)."""
    if not studies:
        return []
    lines = ["## Chosen points scored again on another machine", "",
             "Each study's chosen point (or its confirmation's fresh points) scored once more, on the same points, on "
             "another machine, so that a round-option variant scored there is paired with it on one machine.", "",
             "| study | points | as recorded | again | machine |", "|---|---|---|---|---|"]
    for study in sorted(studies, key=lambda s: s.study_name):
        scored = first_finished(study, 1)
        attrs = study.user_attrs
        source = attrs["rescores"]
        kind = "confirmation points" if source.endswith("|confirmation") else "objective"
        lines.append(f"| {study_label(study)} — forget {source.split('|')[1]} | {kind}: forget {attrs.get('forget')}, "
                     f"seeds {attrs.get('seeds')} | {attrs['recorded_value']:.3f} | "
                     f"{f'{scored[0].value:.3f}' if scored else 'not scored yet'} | {scored_on(study)} |")
    return lines + [""]


def _confirmations(studies: list[Any]) -> list[str]:
    """One table of the fresh points each round-option choice was confirmed on (:func:`confirm_round_options`)."""
    if not studies:
        return []
    lines = ["## Round options confirmed on fresh points", "",
             "Each study's chosen point scored once more on points neither the objective nor a reported table uses; "
             "the margin rule pools these with the objective's points. A study searched further after its "
             "confirmation is confirmed again at its new best; the value is the latest point's.", "",
             "| study | fresh points | mean Avg.Gap | untouched original |", "|---|---|---|---|"]
    for study in sorted(studies, key=lambda s: s.study_name):
        scored = first_finished(study, len(study.trials))
        attrs = study.user_attrs
        value = (f"{scored[-1].value:.3f}" + (f" (latest of {len(scored)} points)" if len(scored) > 1 else "")
                 if scored else "not scored yet")
        lines.append(f"| {study_label(study)} — forget {attrs['confirms'].split('|')[1]} | forget {attrs.get('forget')}, "
                     f"seeds {attrs.get('seeds')} | {value} | {_fmt(attrs.get('original_gap'))} |")
    return lines + [""]


def _per_point(trial: Any, untouched: dict[str, float]) -> list[str]:
    """The best trial's Avg.Gap on each forget set, setting and seed, and where it is not below the untouched
    original's (when the study kept those): a mean can hide one setting it fails."""
    gaps = trial.user_attrs.get("gaps", {})
    if len(gaps) < 2:
        return []
    lines = ["", "Best trial's Avg.Gap per point ([forget set:]setting:seed): "
             + ", ".join(f"{key} {value:.2f}" for key, value in sorted(gaps.items())) + "."]
    if untouched:
        failed = [f"{key} ({gaps[key]:.2f} against {untouched[key]:.2f})" for key in not_below(gaps, untouched)]
        lines.append("Not below the untouched original at: " + ", ".join(failed) + "." if failed
                     else "Below the untouched original at every point.")
    return lines


def not_below(gaps: dict[str, float], untouched: dict[str, float]) -> list[str]:
    """The points (sorted) where a trial's Avg.Gap is not below the untouched original's: a tie counts, as the
    tables' ✗ does."""
    return [key for key in sorted(gaps) if key in untouched and gaps[key] >= untouched[key]]


def study_label(study: Any) -> str:
    """The method's label, marked where the study's rounds differ from the base ones."""
    label = get_method(study.user_attrs.get("method", study.study_name)).label
    options = rounds_label(study.user_attrs.get("round_options", {}))
    return label + (f" ({options})" if options else "")


def _superseded(study: Any) -> bool:
    """A study whose recorded search space is not the method's current one (archived when the space changed)."""
    method = study.user_attrs.get("method")
    return method is not None and study.user_attrs.get("space", space_record(method)) != space_record(method)


def _ranking(studies: list[Any], budget: int) -> list[str]:
    """One table per forget scenario: every method's best value within the budget, best first (the tuning
    objective on validation images and tuning seeds, not a reported result)."""
    by_forget: dict[str, dict[str, float]] = {}
    budgets: dict[str, set[int]] = {}
    rescored: set[str] = set()  # forget scenarios with round-option variants
    for study in studies:
        own, forget = study_budget(study, budget), study.user_attrs.get("forget", "?")
        best = best_trial(study, own)
        if study.user_attrs.get("round_options"):  # a round-option variant rescores one chosen point
            rescored.add(forget)
        else:
            budgets.setdefault(forget, set()).add(own)
        rows = by_forget.setdefault(forget, {})
        label = study_label(study)
        done = len(first_finished(study, own))
        if done < own:  # still running or stopped: its best is not a default, and not a fair comparison yet
            label += f" (incomplete: {done} of {own} trials)"
        rows[label] = best.value if best is not None else math.inf
        if "original_gap" in study.user_attrs:
            rows[ORIGINAL_LABEL] = study.user_attrs["original_gap"]
    lines = ["## Ranking on the tuning objective", "",
             "Best mean Avg.Gap of each method within its trial budget (lower is better). These are "
             "tuning scores, not results: the reported tables are in docs/BENCHMARKS.md. The untouched original "
             "is scored on the same splits; a method above it did worse than doing nothing there.", ""]
    for forget, rows in sorted(by_forget.items()):
        trials = ", ".join(str(b) for b in sorted(budgets.get(forget, ())))
        again = "; other round options: the chosen point once more" if forget in rescored else ""
        lines += [f"| forget {forget} (budget: {trials} trials per method{again}) | best mean Avg.Gap |", "|---|---|"]
        lines += [f"| {label} | {f'{value:.3f}' if math.isfinite(value) else '—'} |"
                  for label, value in sorted(rows.items(), key=lambda row: row[1])]
        lines.append("")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)
