"""The one run pipeline: same request, same numbers through every entry point; a core without UI imports;
typed defaults and presets; the training recipe; the held-out sets."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from wsscl_core.__main__ import main
from wsscl_core.bench import run_benchmark
from wsscl_core.checkpoints import read_checkpoint, save_checkpoint
from wsscl_core.data import ForgetSpec
from wsscl_core.engine import RECIPES, TrainRecipe
from wsscl_core.errors import WssclError
from wsscl_core.methods import (DEFAULTS_FILE, METHODS, TUNED_RECIPE_LR, check_defaults, is_learning_rate,
                                make_config, method_names, read_defaults_document, tuned_defaults)
from wsscl_core.methods.contrastive import PAPER_LITERAL
from wsscl_core.metrics import avg_gap, loss_threshold_auc
from wsscl_core.runs import RunRequest, original_result, prepare, prepared_cost, run
from wsscl_core.studio.jobs import SessionJobs, UnlearnRequest, prepare_run, unlearn_work
from wsscl_core.workspace import open_workspace


def test_the_same_request_gives_the_same_metrics_through_cli_bench_and_studio(digits_workspace, digits_trained,
                                                                              tmp_path, capsys):
    ws = digits_workspace
    overrides = {"epochs": 1}
    checkpoint = save_checkpoint(tmp_path / "original.pt", *digits_trained)
    assert main(["unlearn", "--checkpoint", str(checkpoint), "--dataset", "digits", "--method", "ft",
                 "--forget", "random:0.2", "--seed", "1", "--set", "epochs=1", "--out", str(tmp_path / "ft.pt"),
                 "--device", "cpu"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    bench = next(r for r in run_benchmark(ws, ["retrain", "ft"], "random:0.2", [1], {"ft": overrides}).rows
                 if r.method == "ft").scores

    prepared = prepare_run(ws, UnlearnRequest(ForgetSpec.parse("random:0.2", 1), "ft", overrides, seed=1))
    job = SessionJobs(heartbeat_timeout_s=None).start("unlearn", "ft", unlearn_work(ws, prepared))
    assert job.wait(120) and job.status == "done", job.error
    studio = job.result.unlearned.scores()

    for key in ("UA", "RA", "TA", "MIA", "MIA_AUC"):
        assert cli[key] == bench[key] == studio[key], key
    saved = json.loads((tmp_path / "ft.json").read_text())
    assert saved["metrics"]["UA"] == cli["UA"] and saved["seed"] == 1 and saved["config"]["epochs"] == 1
    _, meta = read_checkpoint(tmp_path / "ft.pt")
    assert meta["run_schema"] == 2 and meta["method"] == "ft" and meta["seed"] == 1
    assert meta["forget"]["text"] == "random:0.2" and meta["metrics"]["UA"] == cli["UA"]


def test_importing_the_core_loads_no_ui_library():
    code = ("import sys, wsscl_core, wsscl_core.methods, wsscl_core.bench, wsscl_core.runs, wsscl_core.tune, "
            "wsscl_core.__main__; print(sorted({m.split('.')[0] for m in sys.modules} & {'streamlit', 'plotly', 'umap'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_paper_literal_preset_differs_from_wsscl_only_in_the_stated_points():
    for scenario in ("random", "class"):
        default = dataclasses.asdict(make_config("wsscl", scenario=scenario))
        literal = dataclasses.asdict(make_config("wsscl_paper", scenario=scenario))
        assert {k for k in default if default[k] != literal[k]} == set(PAPER_LITERAL) - {
            k for k, v in PAPER_LITERAL.items() if default[k] == v}
        assert {k: literal[k] for k in PAPER_LITERAL} == PAPER_LITERAL
    assert make_config("wsscl_paper", {"stage2_lr": 0.02}).stage2_lr == 0.02  # overrides still win


def test_paper_literal_wsscl_masks_only_stage_two(ctx_for_digits):
    """Stage 1 of the paper-literal preset trains every weight; stage 2 scales updates by the mask."""
    from wsscl_core.methods import contrastive

    ctx = ctx_for_digits()
    cfg = make_config("wsscl_paper")
    mask = {n: torch.full_like(p, 0.5) for n, p in ctx.original.named_parameters()}
    stage1, stage2 = contrastive.two_stage_phases(ctx, cfg, mask)
    assert stage1.mask is None and stage2.mask is mask
    both = contrastive.two_stage_phases(ctx, make_config("wsscl"), mask)
    assert all(phase.mask is mask for phase in both)


@pytest.mark.parametrize("name", method_names())
def test_default_learning_rates_follow_the_originals_recipe(name):
    """Trained at twice the tuned recipe's learning rate, an original gets every default learning rate
    doubled and nothing else changed; a learning rate the user sets is taken as given."""
    plain = make_config(name)
    doubled = make_config(name, recipe_lr=2 * TUNED_RECIPE_LR)
    rates = [f.name for f in dataclasses.fields(plain) if is_learning_rate(f.name)]
    for f in dataclasses.fields(plain):
        expected = 2 * getattr(plain, f.name) if f.name in rates else getattr(plain, f.name)
        assert getattr(doubled, f.name) == pytest.approx(expected), f.name
    if rates:
        assert getattr(make_config(name, {rates[0]: 0.003}, recipe_lr=2 * TUNED_RECIPE_LR), rates[0]) == 0.003
    assert make_config(name, recipe_lr=TUNED_RECIPE_LR) == plain


def test_a_run_scales_the_defaults_to_its_workspaces_recipe(digits_workspace):
    ws = digits_workspace
    ws.recipe = dataclasses.replace(ws.recipe, lr=TUNED_RECIPE_LR / 4)
    prepared = prepare(ws, RunRequest.parse("wsscl", "random:0.1"))
    assert prepared.config.stage1_lr == pytest.approx(make_config("wsscl").stage1_lr / 4)
    assert prepared.config.stage2_lr == pytest.approx(make_config("wsscl").stage2_lr / 4)


def test_a_defaults_file_without_its_units_is_refused(tmp_path):
    document = json.loads(DEFAULTS_FILE.read_text())
    del document["recipe_lr"]
    path = tmp_path / "defaults.json"
    path.write_text(json.dumps(document))
    with pytest.raises(WssclError, match="recipe_lr"):
        read_defaults_document(path)


def test_the_defaults_file_round_trips_into_every_methods_config():
    table = read_defaults_document()["methods"]
    assert table == json.loads(DEFAULTS_FILE.read_text())["methods"]
    for name in method_names():
        spec = METHODS[name]
        for scenario in ("random", "class"):
            cfg = make_config(name, scenario=scenario)
            stored = tuned_defaults(spec.preset_of or name, scenario)
            for key, value in stored.items():
                if key not in spec.preset:
                    assert getattr(cfg, key) == value, (name, scenario, key)
            untouched = {f.name for f in dataclasses.fields(cfg)} - set(stored) - set(spec.preset)
            for key in untouched:
                assert getattr(cfg, key) == getattr(spec.config_cls(), key), (name, scenario, key)


@pytest.mark.parametrize("table, message", [
    ({"ft": {"class": {"lrr": 0.1}}}, "no hyperparameter 'lrr'"),
    ({"ft": {"sometimes": {"lr": 0.1}}}, "unknown scenario"),
    ({"nope": {"class": {"lr": 0.1}}}, "Unknown method"),
    ({"wsscl": {"class": {"mask_normalisation": "sideways"}}}, "mask_normalisation must be one of"),
    ({"wsscl_paper": {"class": {"stage1_lr": 0.1}}}, "preset"),
])
def test_a_typo_in_the_defaults_file_fails_when_it_is_read(table, message):
    with pytest.raises(WssclError, match=message):
        check_defaults(table)


def test_loss_threshold_auc_is_chance_on_the_same_distribution_and_one_when_separable():
    rng = np.random.default_rng(0)
    same = loss_threshold_auc(rng.exponential(1.0, 4000), rng.exponential(1.0, 4000))
    assert same == pytest.approx(0.5, abs=0.03)
    assert loss_threshold_auc(rng.uniform(0, 0.1, 500), rng.uniform(1, 2, 500)) == 1.0
    assert loss_threshold_auc(rng.uniform(1, 2, 500), rng.uniform(0, 0.1, 500)) == 0.0
    # by hand: forget losses {0.1, 0.5}, held-out {0.3}; P(forget loss < held-out loss) = 1/2
    assert loss_threshold_auc(np.array([0.1, 0.5]), np.array([0.3])) == 0.5


def test_tuning_scores_on_validation_images_never_the_test_set(digits_workspace):
    ws = digits_workspace
    val, test = ws.data.holdout("val"), ws.data.holdout("test")
    test_rows = {bytes(x.numpy()) for x in test.images}
    assert 0 < len(val) and all(bytes(x.numpy()) in test_rows for x in val.images)  # digits lends half its test set
    result = run(ws, RunRequest.parse("ft", "random:0.1", {"epochs": 1}, 0, "val"))
    assert result.evaluation.confusion_test.sum() == len(val) != len(test)
    with pytest.raises(WssclError, match="held-out"):
        prepare(ws, RunRequest.parse("ft", "random:0.1", holdout="train"))


def test_the_shipped_subset_has_validation_images_apart_from_its_test_set():
    from wsscl_core.data import load_dataset

    data = load_dataset()
    val, test = data.holdout("val"), data.holdout("test")
    assert len(val) == len(test) == 2000 and torch.bincount(val.labels).tolist() == [200] * 10
    test_rows = {bytes(x.numpy()) for x in test.images}
    overlap = sum(bytes(x.numpy()) in test_rows for x in val.images)
    assert overlap <= 2  # Fashion-MNIST has a few duplicate images; none are the same test record


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", float("nan")),
                                          ("momentum", 1.5), ("schedule", "sideways"), ("epochs", 2.5)])
def test_a_recipe_that_cannot_train_is_refused(field, value):
    with pytest.raises(WssclError, match=field):
        dataclasses.replace(TrainRecipe(), **{field: value}).validate()


def test_the_default_recipe_memorises_and_the_augmented_one_stays_available():
    assert TrainRecipe() == RECIPES["memorise"] and not TrainRecipe().augment
    assert RECIPES["augmented"].augment and RECIPES["augmented"].epochs == 15


def test_the_shipped_model_is_in_the_memorising_regime():
    """RA ≥ 99.5 % and TA ≥ 89.5 % as recorded when it was trained, with the recipe Retrain repeats: the
    memorise recipe, with the ragged batches it was trained with before even batches became the default."""
    ws = open_workspace(device="cpu")
    assert ws.recipe == dataclasses.replace(RECIPES["memorise"], batching="ragged")
    assert ws.metadata["metrics"]["RA"] >= 99.5 and ws.metadata["metrics"]["TA"] >= 89.5


def test_cli_train_exposes_the_recipe_fields_and_refuses_a_bad_one_before_loading_data(tmp_path, capsys, monkeypatch):
    import wsscl_core.__main__ as cli

    monkeypatch.setattr(cli, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    assert main(["train", "--dataset", "digits", "--epochs", "0", "--out", str(tmp_path / "m.pt")]) == 2
    assert "epochs" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["train", "--recipe", "augmented", "--no-augment", "--lr", "0.02",
                                          "--out", "x.pt"])
    assert cli._recipe(args) == dataclasses.replace(RECIPES["augmented"], augment=False, lr=0.02)
    args = cli.build_parser().parse_args(["train", "--batching", "ragged", "--out", "x.pt"])
    assert cli._recipe(args) == dataclasses.replace(RECIPES["memorise"], batching="ragged")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--batching", "uneven", "--out", "x.pt"])


@pytest.fixture()
def ctx_for_digits(digits_workspace):
    def make(forget: str = "random:0.1"):
        data = digits_workspace.data
        from wsscl_core.data import make_forget_split

        split = make_forget_split(data.train.labels, ForgetSpec.parse(forget, 0), data.num_classes)
        return digits_workspace.context(split, 0)

    return make


def test_tune_writes_and_resumes_its_sqlite_study(digits_trained, tmp_path, capsys):
    import optuna

    checkpoint = save_checkpoint(tmp_path / "digits.pt", *digits_trained)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    argv = ["tune", "--methods", "ga", "--forget", "random:0.1", "--datasets", "digits", "--checkpoint",
            str(checkpoint), "--seeds", "1", "--storage", storage, "--device", "cpu", "--cache-dir", str(tmp_path)]
    assert main([*argv, "--trials", "2"]) == 0
    study = optuna.load_study(study_name="ga|random:0.1|digits", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    assert done[0].params == {"epochs": make_config("ga").epochs, "lr": make_config("ga").lr}  # trial 0: the default
    assert all(t.value >= 0 and t.user_attrs["gaps"] for t in done)
    references = optuna.load_study(study_name="retrain-references", storage=storage).user_attrs
    assert len(references) == 1 and next(iter(references)).endswith(":random:0.1:100:val")
    reference = references[next(iter(references))]
    for t in done:  # each point's scores are kept with its gap, and give that gap again
        assert t.user_attrs["scores"].keys() == t.user_attrs["gaps"].keys() == {"digits:100"}
        assert avg_gap(t.user_attrs["scores"]["digits:100"], reference) == pytest.approx(t.user_attrs["gaps"]["digits:100"])
    assert main([*argv, "--trials", "3"]) == 0  # resumes: one more trial, Retrain not run again
    study = optuna.load_study(study_name="ga|random:0.1|digits", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 3
    assert len({tuple(sorted(t.params.items())) for t in done}) == 3  # the resumed study drew a new point
    assert "[ga] trial 3/3" in capsys.readouterr().err
    untouched = study.user_attrs["original_gap"]  # the original's Avg.Gap on the same splits and images
    ws = open_workspace(checkpoint, "digits", device="cpu")
    first = prepare(ws, RunRequest.parse("retrain", "random:0.1", None, 100, "val"))
    assert untouched == pytest.approx(avg_gap(original_result(ws, first.split, first.request).scores(),
                                              references[next(iter(references))]))
    assert study.user_attrs["original_gaps"] == {"digits:100": pytest.approx(untouched)}  # the same, per point
    report = tmp_path / "TUNING.md"
    assert main(["tune", "--storage", storage, "--report", str(report), "--trials", "3"]) == 0
    text = report.read_text()
    assert "## GA — forget random:0.1" in text and "3 finished trials" in text
    best = min(t.value for t in done)
    ranking = [line for line in text.splitlines() if line.startswith("| GA |") or line.startswith("| Original")]
    assert sorted(ranking) == sorted([f"| GA | {best:.3f} |", f"| Original (no unlearning) | {untouched:.3f} |"])
    # the study's own budget (the --trials it was last run with) decides, whatever the report is asked
    assert main(["tune", "--storage", storage, "--report", str(report), "--trials", "1"]) == 0
    text = report.read_text()
    assert "(budget: 3 trials per method)" in text and f"best of the first 3 {best:.3f}" in text


def test_a_cost_capped_method_runs_only_points_within_its_cap(digits_trained, tmp_path, monkeypatch):
    """WSS-CL (5 % budget): a drawn point whose planned compute is over the cap is not run and does not count
    toward the trial budget; every trial that ran is within it, and the report says how many were left out."""
    import optuna

    from wsscl_core.methods.contrastive import BudgetWSSCLConfig

    monkeypatch.setattr(BudgetWSSCLConfig, "COST_CAP", 0.15)  # the tiny digits Retrain (12 epochs) costs little
    checkpoint = save_checkpoint(tmp_path / "digits.pt", *digits_trained)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    assert main(["tune", "--methods", "wsscl_budget", "--forget", "random:0.1", "--datasets", "digits",
                 "--checkpoint", str(checkpoint), "--seeds", "1", "--storage", storage, "--device", "cpu",
                 "--cache-dir", str(tmp_path), "--trials", "3"]) == 0
    study = optuna.load_study(study_name="wsscl_budget|random:0.1|digits", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    ran = [t for t in done if not t.user_attrs.get("over_cap")]
    skipped = [t for t in done if t.user_attrs.get("over_cap")]
    assert len(ran) == 3 and all(t.user_attrs["cost"] <= 0.15 and t.user_attrs["gaps"] for t in ran)
    assert skipped and all(t.user_attrs["cost"] > 0.15 and "gaps" not in t.user_attrs for t in skipped)
    assert all(t.constraints == {"cost_over_cap": pytest.approx(t.user_attrs["cost"] - 0.15)} for t in done)
    # a trial's cost is its plan against Retrain's on the same split, as a run would be prepared
    ws = open_workspace(checkpoint, "digits", device="cpu")
    trial = skipped[0]
    prepared = prepare(ws, RunRequest.parse("wsscl_budget", "random:0.1", trial.params, 100, "val"))
    assert trial.user_attrs["cost"] == pytest.approx(prepared_cost(ws, prepared))
    report = tmp_path / "TUNING.md"
    assert main(["tune", "--storage", storage, "--report", str(report), "--trials", "3"]) == 0
    assert f"3 finished trials at distinct points. Cost cap: 0.15 of Retrain's compute at the first forget set; {len(skipped)} points" \
        in report.read_text()


def test_workers_started_together_draw_different_points_and_each_draws_reproducibly(monkeypatch):
    """Workers on one store see the same trial count when they start; their samplers must still differ, or
    they spend the budget on repeated points (a study run with two workers once held 14 distinct of 16)."""
    import optuna

    import wsscl_core.__main__ as cli
    from wsscl_core import tune

    def first_draw(worker: int) -> tuple:
        study = optuna.create_study(sampler=tune.sampler_for(3, worker, 16))
        trial = study.ask()
        return trial.suggest_int("epochs", 1, 10), trial.suggest_float("lr", 1e-3, 5e-2, log=True)

    assert first_draw(0) == first_draw(0) and first_draw(1) == first_draw(1)
    assert len({first_draw(worker) for worker in range(3)}) == 3
    started = []
    monkeypatch.setattr(cli.subprocess, "Popen", lambda argv, env: started.append(argv))
    cli._start_workers(cli.build_parser().parse_args(["tune", "--workers", "3"]))
    assert [argv[argv.index("--worker-index") + 1] for argv in started] == ["1", "2"]


def test_a_repeated_point_is_not_run_and_does_not_count_toward_the_budget(digits_trained, tmp_path, capsys):
    """Every method's budget is one of distinct points: a drawn point that an earlier trial ran is not run again
    (runs are deterministic) and does not count, and repeats already in a store are counted once."""
    import optuna

    from wsscl_core import tune

    checkpoint = save_checkpoint(tmp_path / "digits.pt", *digits_trained)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    argv = ["tune", "--methods", "ga", "--forget", "random:0.1", "--datasets", "digits", "--checkpoint",
            str(checkpoint), "--seeds", "1", "--storage", storage, "--device", "cpu", "--cache-dir", str(tmp_path)]
    assert main([*argv, "--trials", "1"]) == 0  # the default
    study = optuna.load_study(study_name="ga|random:0.1|digits", storage=storage)
    point = {"epochs": 2, "lr": 3e-4}
    study.enqueue_trial(point)
    study.enqueue_trial(point)  # drawn twice, as two workers with one sampler seed once did
    assert main([*argv, "--trials", "3"]) == 0
    study = optuna.load_study(study_name="ga|random:0.1|digits", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    first, repeat = [t for t in done if t.params == point]
    assert repeat.user_attrs["repeat_of"] == first.number and "gaps" not in repeat.user_attrs
    assert repeat.value == first.value and first.user_attrs["gaps"]
    assert len(done) == 4 and tune.first_finished(study, 3) == [t for t in done if t is not repeat]
    assert "[ga] trial 3/3" in capsys.readouterr().err and len({tuple(sorted(t.params.items())) for t in done}) == 3
    report = tmp_path / "TUNING.md"
    assert main(["tune", "--storage", storage, "--report", str(report), "--trials", "3"]) == 0
    assert "3 finished trials at distinct points. 1 more repeated an earlier trial's point (not counted)." in report.read_text()
    # a store written before repeats were caught holds both runs: the first counts, the repeat does not
    older = optuna.create_study()
    for number, value in enumerate([2.0, 1.0, 1.0, 3.0]):
        older.add_trial(optuna.trial.create_trial(
            params={"lr": [0.1, 0.2, 0.2, 0.3][number]}, value=value,
            distributions={"lr": optuna.distributions.FloatDistribution(0.01, 1.0)}))
    assert [t.number for t in tune.first_finished(older, 3)] == [0, 1, 3]


def test_tune_searches_learning_rates_in_the_defaults_units(digits_workspace, tmp_path, monkeypatch):
    """On an original trained at half the tuned recipe's learning rate, a trial's lr runs halved, so the
    value a study stores means the same step size whatever original it was found on."""
    import optuna

    from wsscl_core import tune

    ws = digits_workspace
    ws.recipe = dataclasses.replace(ws.recipe, lr=TUNED_RECIPE_LR / 2)
    requests = []
    real_run = tune.run
    monkeypatch.setattr(tune, "run", lambda w, request, **kw: requests.append(request) or real_run(w, request, **kw))
    objective = tune.objective_for("ga", "random:0.1", [tune.TuneSetting("digits", ws)], [tune.TUNING_SEED],
                                   f"sqlite:///{tmp_path / 'studies.db'}")
    value = objective(optuna.trial.FixedTrial({"epochs": 1, "lr": 0.004}))
    assert value >= 0
    ga = [r for r in requests if r.method == "ga"]
    # and its rounds train as the study states (augmented, constant learning rate), whatever the defaults file holds
    assert [dict(r.overrides) for r in ga] == [{"epochs": 1, "lr": pytest.approx(0.002), "augment_rounds": True,
                                                "schedule": "constant", "lr_per_forget_sample": False,
                                                "forget_pass_floor": False}]


def test_a_point_another_worker_is_running_is_left_to_it(digits_workspace, tmp_path):
    """Two workers may draw one point at the same time: the second does not run it (it would score the same)
    and its trial ends pruned, so it neither counts nor blocks the budget."""
    import optuna
    from optuna.trial import TrialState

    from wsscl_core import tune

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(storage=storage)
    point = {"epochs": 2, "lr": 3e-4}
    for _ in range(2):
        study.enqueue_trial(point)
    running = study.ask()  # the other worker's trial, still running at this point
    tune.suggest(running, METHODS["ga"].config_cls.SEARCH_SPACE)
    objective = tune.objective_for("ga", "random:0.1", [tune.TuneSetting("digits", digits_workspace)],
                                   [tune.TUNING_SEED], storage)
    second = study.ask()
    with pytest.raises(optuna.TrialPruned):
        objective(second)
    assert second.params == running.params == point
    study.tell(second, state=TrialState.PRUNED)
    assert study.trials[second.number].user_attrs["repeat_of"] == running.number
    assert tune.first_finished(study, 16) == []


def test_round_option_variants_score_the_chosen_point_again(digits_trained, tmp_path, capsys):
    """tune --plain-rounds and --schedule score the default again, each in its own study, with rounds that do
    not augment or whose learning rate decays; the defaults file gets whichever study scores lowest, with the
    round options of the study that won."""
    import optuna

    from wsscl_core import tune

    checkpoint = save_checkpoint(tmp_path / "digits.pt", *digits_trained)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    argv = ["tune", "--methods", "ft", "--forget", "random:0.1", "--datasets", "digits", "--checkpoint",
            str(checkpoint), "--seeds", "1", "--storage", storage, "--device", "cpu", "--cache-dir", str(tmp_path)]
    variants = {"": [], "|plain rounds": ["--plain-rounds"], "|cosine schedule": ["--schedule", "cosine"]}
    for flags in variants.values():
        assert main([*argv, "--trials", "1", *flags]) == 0
    studies = {suffix: optuna.load_study(study_name="ft|random:0.1|digits" + suffix, storage=storage)
               for suffix in variants}
    base = studies[""]
    assert {suffix: study.user_attrs.get("round_options") for suffix, study in studies.items()} == {
        "": None, "|plain rounds": {"augment_rounds": False}, "|cosine schedule": {"schedule": "cosine"}}
    # each variant's trial is exactly a run with its round options at the base study's point, scored the same way
    ws = open_workspace(checkpoint, "digits", device="cpu")
    reference = next(iter(optuna.load_study(study_name="retrain-references", storage=storage).user_attrs.values()))
    values = {}
    for suffix in ("|plain rounds", "|cosine schedule"):
        trial = studies[suffix].best_trial
        assert trial.params == base.best_trial.params and trial.value != base.best_trial.value
        values[suffix] = {**trial.params, **studies[suffix].user_attrs["round_options"]}
        result = run(ws, RunRequest.parse("ft", "random:0.1", values[suffix], 100, "val"))
        assert trial.value == pytest.approx(avg_gap(result.scores(), reference))
    values[""] = base.best_trial.params
    settings = tune.open_settings(["digits"], str(checkpoint), tmp_path, "cpu")
    chosen, value = tune.chosen_values(tune.open_storage(storage), "ft", "random:0.1", settings)
    # one seed on one setting is a single point: no estimate of the objective's noise, so the base stays
    assert (chosen, value) == (values[""], base.best_trial.value)
    report = tmp_path / "TUNING.md"
    assert main(["tune", "--storage", storage, "--report", str(report), "--trials", "1"]) == 0
    text = report.read_text()
    for suffix, label in (("|plain rounds", "plain rounds"), ("|cosine schedule", "cosine schedule")):
        assert f"## FT ({label}) — forget random:0.1" in text
        assert f"| FT ({label}) | {studies[suffix].best_trial.value:.3f} |" in text
    # --confirm-on scores every round option on fresh split seeds where a variant scored lower than the base
    capsys.readouterr()
    assert main([*argv, "--confirm-on", "random:0.1", "--workers", "2"]) == 2
    assert main([*argv, "--confirm-on", "random:0.1"]) == 0
    out = capsys.readouterr().out
    lower = any(studies[suffix].best_trial.value < base.best_trial.value for suffix in ("|plain rounds", "|cosine schedule"))
    assert ("FT (plain rounds): mean Avg.Gap" in out and "seeds [104]" in out) == lower
    assert ("FT: no round option scores lower than the base; nothing to confirm" in out) != lower
    assert main([*argv, "--trials", "1", "--plain-rounds", "--methods", "iu"]) == 2  # IU trains in no rounds
    assert "no plain rounds variant" in capsys.readouterr().err
    # FT trains on D_r alone, so its learning rate cannot count per forget sample
    assert main([*argv, "--trials", "1", "--lr-per-forget-sample", "--methods", "ft"]) == 2
    assert "trains in no rounds on the forget set, so it has no lr per forget sample variant" in capsys.readouterr().err
    assert main([*argv, "--trials", "1", "--forget-pass-floor", "--methods", "l1_sparse"]) == 2
    assert "trains in no rounds on the forget set, so it has no forget pass floor variant" in capsys.readouterr().err


def _scored_study(storage, name, gaps, options=None, confirms=None, method="ft", forget="random:0.1", params=None,
                  scores=None):
    """A finished one-trial study of ``method`` (FT at lr 0.01 unless ``params``) whose trial scored ``gaps``
    (per objective point, and ``scores`` there if given); with ``confirms``, the confirmation of that study on
    fresh points."""
    import optuna

    study = optuna.create_study(study_name=name, storage=storage)
    for key, value in {"method": method, "forget": forget, "settings": ["digits"], "confirms": confirms}.items():
        if value is not None:
            study.set_user_attr(key, value)
    if options:
        study.set_user_attr("round_options", options)
    study.set_user_attr("budget", 1)
    params = params or {"lr": 0.01}
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions={k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()},
        value=float(np.mean(list(gaps.values()))), user_attrs={"gaps": gaps, **({"scores": scores} if scores else {})}))


@pytest.mark.parametrize("variant_gaps, variant_wins", [
    ([1.0, 1.1, 0.9, 1.0], True),    # 1.0 lower at every point: far beyond the noise
    ([0.5, 3.4, 1.8, 2.1], False),   # lower on the mean (1.95 against 2.0), inside the points' spread
    ([2.5, 2.5, 2.5, 2.5], False),   # higher
])
def test_a_round_option_variant_replaces_the_base_only_by_a_clear_margin(variant_gaps, variant_wins):
    """The defaults file keeps the base rounds unless a variant's gain over the objective's points exceeds
    two standard errors of its per-point gains: a smaller gain would as likely reverse on other splits."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", None)]
    points = [f"digits:{seed}" for seed in (100, 101, 102, 103)]
    _scored_study(storage, "ft|random:0.1|digits", dict(zip(points, [2.0, 2.1, 1.9, 2.0])))
    _scored_study(storage, "ft|random:0.1|digits|cosine schedule", dict(zip(points, variant_gaps)),
                  {"schedule": "cosine"})
    chosen, value = tune.chosen_values(storage, "ft", "random:0.1", settings)
    assert chosen == ({"lr": 0.01, "schedule": "cosine"} if variant_wins else {"lr": 0.01})
    assert value == pytest.approx(np.mean(variant_gaps) if variant_wins else 2.0)
    assert tune.clear_gain({"a": 1.0}, {"a": 0.0}) is False  # one point: no noise estimate


def test_the_margin_keeps_its_chance_on_fewer_points():
    """Eight points or more: two standard errors. Fewer: the Student-t value that leaves noise the same one-sided
    chance of clearing the margin as two standard errors over eight points, so it grows as the points shrink."""
    from scipy import stats

    from wsscl_core import tune

    assert tune.margin_for(8) == tune.margin_for(16) == 2.0
    margins = [tune.margin_for(n) for n in range(2, 8)]
    assert margins == sorted(margins, reverse=True) and margins[0] == pytest.approx(7.39, abs=0.01)
    chance = stats.t.sf(2.0, 7)
    assert all(stats.t.sf(m, n - 1) == pytest.approx(chance) for n, m in zip(range(2, 8), margins))


@pytest.mark.parametrize("changed_gaps, variant_wins", [
    ([0.50, 0.36], True),    # lower at both points where the runs differ, consistently: clear at 7.4 SE
    ([0.50, 1.20], False),   # one better, one worse: inside the noise
])
def test_a_variant_is_judged_on_the_points_where_its_runs_differ(changed_gaps, variant_wins):
    """A forget pass floor changes only the runs on small forget sets; elsewhere it is the same computation
    (the same scores to the last digit, on one machine) and says nothing of the variant. Its gains are judged on
    the points where the runs differ, against the margin for that many points: six exact zeros would otherwise
    hold the standard error down and the mean down more, so that no gain at two points of eight could clear it."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", None)]
    points = [f"digits:{seed}" for seed in range(100, 108)]
    base_gaps = [0.94, 0.89, 3.70, 4.93, 0.57, 0.75, 4.41, 3.80]
    scores = {p: {"UA": 9.0 + i, "RA": 92.0, "TA": 88.0, "MIA": 12.0, "MIA_AUC": 0.51 + i / 100}
              for i, p in enumerate(points)}
    _scored_study(storage, "ft|random:0.1|digits", dict(zip(points, base_gaps)), scores=scores)
    variant_scores = {**scores, **{p: {**scores[p], "MIA_AUC": 0.6} for p in points[:2]}}
    variant = dict(zip(points, changed_gaps + base_gaps[2:]))
    _scored_study(storage, "ft|random:0.1|digits|forget pass floor", variant, {"forget_pass_floor": True},
                  scores=variant_scores)
    chosen, _ = tune.chosen_values(storage, "ft", "random:0.1", settings)
    assert chosen == ({"lr": 0.01, "forget_pass_floor": True} if variant_wins else {"lr": 0.01})
    # over all eight points the same gains could not clear the margin, however large
    gain = tune.paired_gain(dict(zip(points, base_gaps)), variant)
    assert gain[0] < tune.MARGIN_STANDARD_ERRORS * gain[1]
    report = tune.tuning_report(storage, 1)
    assert "on the 2 points where the runs differ (" + ("a clear gain" if variant_wins else "no clear gain") in report
    # the same Avg.Gap with other scores (here the loss attack's AUC) is two runs that differ
    base, floor = tune.round_option_evidence(storage, "ft", "random:0.1", settings)
    same_gap = {**floor.gaps, points[2]: base.gaps[points[2]]}
    other_auc = {**floor.by_machine[floor.machine].scores, points[2]: {**scores[points[2]], "MIA_AUC": 0.7}}
    assert tune.differing_points(base.by_machine[base.machine], tune.Evidence(0.0, same_gap, other_auc)) == points[:3]
    # where a trial kept no scores (trials before they were kept), every point counts, as before
    assert tune.differing_points(tune.Evidence(0.0, base.gaps, {}), tune.Evidence(0.0, floor.gaps, {})) == points


def test_two_round_options_are_kept_together_only_if_each_clearly_adds_to_the_other():
    """Plain rounds with a cosine schedule must clearly beat plain rounds alone (and the cosine schedule alone),
    not only the base: here it is lower than plain rounds by less than the noise, so plain rounds are chosen."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", None)]
    points = [f"digits:{seed}" for seed in (100, 101, 102, 103)]
    studies = {"": ([2.0, 2.1, 1.9, 2.0], None), "|plain rounds": ([1.0, 1.1, 0.9, 1.0], {"augment_rounds": False}),
               "|cosine schedule": ([2.1, 2.1, 2.0, 2.2], {"schedule": "cosine"}),
               "|plain rounds, cosine schedule": ([0.6, 1.4, 0.7, 1.1], {"augment_rounds": False, "schedule": "cosine"})}
    for suffix, (gaps, options) in studies.items():
        _scored_study(storage, "ft|random:0.1|digits" + suffix, dict(zip(points, gaps)), options)
    assert tune.chosen_values(storage, "ft", "random:0.1", settings) == ({"lr": 0.01, "augment_rounds": False}, 1.0)
    report = tune.tuning_report(storage, 1)  # docs/TUNING.md states each comparison and its verdict
    clear = "clear above 2.5 standard errors"  # four points: the Student-t margin of eight points' chance
    assert (f"over the base rounds +1.050 ± 0.155 (a clear gain, {clear}); over cosine schedule +1.150 ± 0.171 (a "
            f"clear gain, {clear}); over plain rounds +0.050 ± 0.155 (no clear gain, {clear}).") in report
    # lower at every point by the same amount: the combination clearly adds to plain rounds, and is chosen
    optuna.delete_study(study_name="ft|random:0.1|digits|plain rounds, cosine schedule", storage=storage)
    _scored_study(storage, "ft|random:0.1|digits|plain rounds, cosine schedule",
                  dict(zip(points, [0.8, 0.9, 0.7, 0.8])), {"augment_rounds": False, "schedule": "cosine"})
    chosen, value = tune.chosen_values(storage, "ft", "random:0.1", settings)
    assert chosen == {"lr": 0.01, "augment_rounds": False, "schedule": "cosine"} and value == pytest.approx(0.8)


@pytest.mark.parametrize("failing, chosen_options", [
    ({}, {"augment_rounds": False}),  # every candidate transfers: the margin rule's choice
    # the choice fails the small classes: among the others, plain rounds with the floor clearly beat the rest
    ({"plain": (0, 1)}, {"augment_rounds": False, "forget_pass_floor": True}),
    ({"plain": (1, 0), "base": (1, 0), "floor": (1, 0), "plain+floor": (1, 0)}, {"augment_rounds": False}),  # none
    ({"plain": (0, 1), "floor": (0, 2), "plain+floor": (1, 0)}, {}),  # only the base transfers
    # none passes both: among those that pass the digits check (the base and the floor), the floor
    ({"plain": (1, 0), "plain+floor": (1, 1), "base": (0, 1), "floor": (0, 1)}, {"forget_pass_floor": True}),
])
def test_a_class_default_is_chosen_among_the_candidates_that_transfer(monkeypatch, failing, chosen_options):
    """On class forgetting the margin rule chooses among the candidates that pass both transfer checks (other
    classes of digits; the objective's classes at a tenth of their size), else among those that pass the
    first, else among all. Here plain rounds clearly beat the base and the floor, the floor clearly beats the
    base, and plain rounds with the floor add nothing clear to plain rounds; ``failing`` gives a candidate's
    failures per check (none by default)."""
    import optuna

    from wsscl_core import tune
    from wsscl_core.methods import BASE_ROUNDS

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", None)]
    points = [f"digits:{seed}" for seed in (100, 101, 102, 103)]
    candidates = {"base": ([2.0, 2.1, 1.9, 2.0], {}),
                  "plain": ([1.0, 1.1, 0.9, 1.0], {"augment_rounds": False}),
                  "floor": ([1.5, 1.6, 1.4, 1.5], {"forget_pass_floor": True}),
                  "plain+floor": ([0.9, 1.2, 0.7, 1.1], {"augment_rounds": False, "forget_pass_floor": True})}
    values = {"epochs": 4, "lr": 0.01}
    ran = []

    def failures(method, run_values):
        ran.append(run_values)
        options = {k: v for k, v in run_values.items() if k in BASE_ROUNDS and v != BASE_ROUNDS[k]}
        name = next(n for n, (_, o) in candidates.items() if o == options)
        return [[f"check {i} class:3 UA 50.0, RA 99.0 ({name})"] * n for i, n in enumerate(failing.get(name, (0, 0)))]

    monkeypatch.setattr(tune, "transfer_failures", failures)
    for gaps, options in candidates.values():
        _scored_study(storage, tune.study_name("rl", "class:5+class:2", settings, options), dict(zip(points, gaps)),
                      options or None, method="rl", forget="class:5+class:2", params=values)
    refused = []
    chosen, value = tune.chosen_values(storage, "rl", "class:5+class:2", settings, on_refused=refused.append)
    assert chosen == {**values, **chosen_options}
    assert value == pytest.approx(float(np.mean(next(g for g, o in candidates.values() if o == chosen_options))))
    # every candidate ran with the rounds its study scored, whatever the defaults file holds for it
    assert len(ran) == 4 and all(r.keys() >= BASE_ROUNDS.keys() for r in ran)
    assert len(refused) == sum(1 for n in failing.values() if any(n))
    _scored_study(storage, tune.study_name("rl", "random:0.1", settings), dict(zip(points, candidates["base"][0])),
                  method="rl", params=values)
    assert tune.chosen_values(storage, "rl", "random:0.1", settings)[0] == values
    assert len(ran) == 4  # random forgetting has no transfer runs


def test_the_transfer_check_runs_the_objectives_classes_on_a_small_original():
    """The second transfer original holds 100 train images per class of the shipped subset and memorises them;
    on it, WSS-CL without the floor on forget steps leaves part of a class recognised (its stage 1 counts
    passes over a forget set a tenth of the tuning classes' size), and the check reports it by name."""
    from wsscl_core import tune
    from wsscl_core.methods import BASE_ROUNDS, tuned_defaults

    ws = tune.small_transfer_workspace()
    assert torch.bincount(ws.data.train.labels).tolist() == [tune.SMALL_TRANSFER_PER_CLASS] * 10
    assert ws.metadata["metrics"]["RA"] > 99
    values = {**BASE_ROUNDS, **tuned_defaults("wsscl", "class"), "forget_pass_floor": False}
    on_digits, on_small = tune.transfer_failures("wsscl", values)
    assert on_digits == [] and on_small and all(f.startswith(f"{ws.data.name} class:") for f in on_small), on_small
    assert tune.checks_passed_in_order([on_digits, on_small]) == 1


def test_the_small_transfer_original_ships_and_a_file_made_otherwise_is_trained_again(tmp_path, monkeypatch):
    """The shipped file is the original of the current draw and recipe, used without training; one recorded
    with another recipe is trained again and replaced."""
    from wsscl_core import tune

    def refuse_training(*args, **kwargs):
        raise AssertionError("the shipped small transfer original was trained again")

    monkeypatch.setattr(tune, "train_original", refuse_training)
    tune.small_transfer_workspace.cache_clear()
    try:
        shipped = tune.small_transfer_workspace()
        assert shipped.recipe == TrainRecipe() and shipped.metadata["metrics"]["RA"] > 99
        assert torch.equal(shipped.data.train.images, tune.small_transfer_data().train.images)

        other = tmp_path / "small.pt"
        save_checkpoint(other, shipped.original, {**shipped.metadata, "recipe": TrainRecipe(epochs=29).to_dict()})
        trained = []
        monkeypatch.setattr(tune, "SMALL_TRANSFER_ORIGINAL", other)
        monkeypatch.setattr(tune, "train_original", lambda data, *args, **kwargs: trained.append(
            (data.name, args, kwargs)) or (shipped.original, shipped.metadata))
        tune.small_transfer_workspace.cache_clear()
        tune.small_transfer_workspace()
        assert trained == [(shipped.data.name, ("compact", TrainRecipe()), {"seed": 0, "device": "cpu"})]
        assert TrainRecipe.from_dict(read_checkpoint(other)[1]["recipe"]) == TrainRecipe()
    finally:
        tune.small_transfer_workspace.cache_clear()


def test_confirmation_points_pool_with_the_objective_only_when_every_round_option_has_them():
    """tune --confirm-on scores every round option's chosen point on fresh points; the margin rule then judges
    the variant over both sets of points. Here the objective's four points leave the gain inside the noise, the
    fresh points show it at every point, and pooled the gain is clear; with one confirmation missing the
    points could not be paired, and the objective's alone decide (the base stays)."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", None)]
    objective = [f"digits:{seed}" for seed in (100, 101, 102, 103)]
    fresh = [f"digits:{seed}" for seed in (104, 105, 106, 107)]
    names = {"": ("ft|random:0.1|digits", None), "cosine": ("ft|random:0.1|digits|cosine schedule", {"schedule": "cosine"})}
    _scored_study(storage, names[""][0], dict(zip(objective, [2.0, 2.1, 1.9, 2.0])))
    _scored_study(storage, names["cosine"][0], dict(zip(objective, [1.5, 2.3, 1.6, 1.9])), names["cosine"][1])
    assert tune.chosen_values(storage, "ft", "random:0.1", settings)[0] == {"lr": 0.01}  # +0.175 ± 0.149
    _scored_study(storage, tune.confirmation_name(names[""][0]), dict(zip(fresh, [2.0, 2.2, 1.8, 2.1])),
                  confirms=names[""][0])
    assert tune.chosen_values(storage, "ft", "random:0.1", settings)[0] == {"lr": 0.01}  # not every one confirmed
    _scored_study(storage, tune.confirmation_name(names["cosine"][0]), dict(zip(fresh, [1.8, 2.0, 1.6, 1.9])),
                  names["cosine"][1], confirms=names["cosine"][0])
    evidence = {c.options.get("schedule", "base"): c.gaps
                for c in tune.round_option_evidence(storage, "ft", "random:0.1", settings)}
    assert sorted(evidence["cosine"]) == sorted(objective + fresh) and evidence["base"].keys() == evidence["cosine"].keys()
    chosen, value = tune.chosen_values(storage, "ft", "random:0.1", settings)
    assert chosen == {"lr": 0.01, "schedule": "cosine"} and value == pytest.approx(1.825)
    report = tune.tuning_report(storage, 1)
    assert "over 8 points, the objective's and its confirmation's" in report
    assert "over the base rounds +0.188 ± 0.069 (a clear gain)" in report  # pooled: 8 paired gains
    # confirmation studies are listed on their own, not ranked as tuning studies
    assert "## FT (cosine schedule) — forget random:0.1\n" in report and "|confirmation" not in report
    assert "| FT (cosine schedule) — forget random:0.1 | forget random:0.1, seeds None | 1.825 |" in report


def test_confirm_round_options_scores_each_chosen_point_on_fresh_splits(digits_workspace):
    """The confirmation of a round-option choice runs each study's chosen point, with its round options, on
    split seeds the objective did not use, scored exactly as a tuning trial; once scored it is not run again,
    and a method whose variants all score above the base is not confirmed (no variant could be chosen)."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", digits_workspace)]
    point = {"epochs": 1, "lr": 0.01}
    distributions = {"epochs": optuna.distributions.IntDistribution(1, 10),
                     "lr": optuna.distributions.FloatDistribution(1e-3, 5e-2)}
    studies = {}
    for name, options, value in (("ft|random:0.1|digits", None, 2.0),
                                 ("ft|random:0.1|digits|plain rounds", {"augment_rounds": False}, 1.0)):
        study = optuna.create_study(study_name=name, storage=storage)
        for key, attr in {"method": "ft", "forget": "random:0.1", "settings": ["digits"], "budget": 1,
                          "round_options": options}.items():
            if attr is not None:
                study.set_user_attr(key, attr)
        study.add_trial(optuna.trial.create_trial(params=point, distributions=distributions, value=value,
                                                  user_attrs={"gaps": {"digits:100": value, "digits:101": value}}))
        studies[name] = study
    with pytest.raises(WssclError, match="fresh"):
        tune.confirm_round_options(storage, "ft", "random:0.1", settings, "random:0.1", [101])
    confirmations = tune.confirm_round_options(storage, "ft", "random:0.1", settings, "random:0.1", [104])
    assert [c.user_attrs["confirms"] for c in confirmations] == list(studies)
    reference = next(iter(optuna.load_study(study_name=tune.REFERENCES, storage=storage).user_attrs.values()))
    for confirmation, options in zip(confirmations, ({}, {"augment_rounds": False})):
        trial = tune.first_finished(confirmation, 1)[0]
        assert trial.params == point and list(trial.user_attrs["gaps"]) == ["digits:104"]
        result = run(digits_workspace, RunRequest.parse("ft", "random:0.1", {**point, **options}, 104, "val"))
        assert trial.value == pytest.approx(avg_gap(result.scores(), reference))
    again = tune.confirm_round_options(storage, "ft", "random:0.1", settings, "random:0.1", [104])
    assert [len(c.trials) for c in again] == [1, 1]
    assert [len(c.gaps) for c in tune.round_option_evidence(storage, "ft", "random:0.1", settings)] == [3, 3]
    # a study searched further after its confirmation has another best: its earlier fresh points are not pooled
    # for it, and confirming again scores the new best
    better = {"epochs": 2, "lr": 0.01}
    plain = studies["ft|random:0.1|digits|plain rounds"]
    plain.add_trial(optuna.trial.create_trial(params=better, distributions=distributions, value=0.5,
                                              user_attrs={"gaps": {"digits:100": 0.5, "digits:101": 0.5}}))
    plain.set_user_attr("budget", 2)
    assert [len(c.gaps) for c in tune.round_option_evidence(storage, "ft", "random:0.1", settings)] == [2, 2]
    heard = []
    again = tune.confirm_round_options(storage, "ft", "random:0.1", settings, "random:0.1", [104],
                                       on_scored=lambda study, trial: heard.append(trial.params))
    assert [len(c.trials) for c in again] == [1, 2] and tune.first_finished(again[1], 2)[1].params == better
    assert heard == [point, better]
    assert [len(c.gaps) for c in tune.round_option_evidence(storage, "ft", "random:0.1", settings)] == [3, 3]
    optuna.delete_study(study_name="ft|random:0.1|digits|plain rounds", storage=storage)
    _scored_study(storage, "ft|random:0.1|digits|plain rounds", {"digits:100": 3.0, "digits:101": 3.0},
                  {"augment_rounds": False})  # now above the base: nothing to confirm
    assert tune.confirm_round_options(storage, "ft", "random:0.1", settings, "random:0.1", [105]) == []


def test_augment_rounds_false_trains_every_round_on_plain_images(digits_workspace, monkeypatch):
    """A config's augment_rounds=False reaches every round of its method, except the contrastive second view."""
    from wsscl_core import engine

    calls: list[str] = []
    real = engine.augment_batch
    monkeypatch.setattr(engine, "augment_batch", lambda *a, **k: calls.append("x") or real(*a, **k))
    ws = digits_workspace

    def augmented_batches(method: str, augment: bool, **values) -> int:
        calls.clear()
        run(ws, RunRequest.parse(method, "random:0.1", {**values, "augment_rounds": augment}, 0, "val"))
        return len(calls)

    assert augmented_batches("ft", False, epochs=1) == 0 < augmented_batches("ft", True, epochs=1)
    one_stage = {"stage1_epochs": 0, "stage2_epochs": 1}
    assert 0 < augmented_batches("cl", False, **one_stage) < augmented_batches("cl", True, **one_stage)


def test_a_configs_schedule_reaches_every_phase(digits_workspace, monkeypatch):
    """A config's schedule sets the learning rate of every phase of its method: constant by default, decaying
    over each phase (both of WSS-CL's stages) with "cosine". Retrain keeps the original's recipe."""
    from wsscl_core import engine

    rates: list[tuple[str, float]] = []
    real = engine.Phase.lr_at
    monkeypatch.setattr(engine.Phase, "lr_at", lambda phase, step, total: rates.append(
        (phase.name, real(phase, step, total))) or real(phase, step, total))
    values = {"stage1_epochs": 1, "stage2_epochs": 1, "stage1_lr": 0.01, "stage2_lr": 0.02}
    for schedule in ("constant", "cosine"):
        rates.clear()
        run(digits_workspace, RunRequest.parse("wsscl", "random:0.1", {**values, "schedule": schedule}, 0, "val"))
        by_phase = {name: [lr for n, lr in rates if n == name] for name, _ in rates}
        assert len(by_phase) == 2
        for name, lrs in by_phase.items():
            start = lrs[0]
            assert start == pytest.approx(values["stage1_lr"] if "1" in name else values["stage2_lr"])
            if schedule == "constant":
                assert set(lrs) == {start}
            else:
                assert len(set(lrs)) > 1 and lrs == sorted(lrs, reverse=True)
    # Retrain has no rounds option: it repeats the original's recipe, schedule included
    rates.clear()
    recipe = digits_workspace.recipe
    run(digits_workspace, RunRequest.parse("retrain", "random:0.1", None, 0, "val"))
    steps = [lr for name, lr in rates if name == "retrain"]
    assert recipe.schedule == "cosine" and max(steps) > recipe.lr / 2 and steps[-1] < recipe.lr / 10


def test_tune_over_several_forget_sets_averages_every_one(digits_trained, tmp_path, capsys):
    """``random:0.1+random:0.3``: one study whose trials are scored on both forget sets (values that must
    transfer across forget-set sizes); a mix of random and class forget sets is refused."""
    import optuna

    checkpoint = save_checkpoint(tmp_path / "digits.pt", *digits_trained)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    argv = ["tune", "--methods", "ga", "--datasets", "digits", "--checkpoint", str(checkpoint), "--seeds", "1",
            "--storage", storage, "--device", "cpu", "--cache-dir", str(tmp_path), "--trials", "1"]
    assert main([*argv, "--forget", "random:0.1+random:0.3"]) == 0
    study = optuna.load_study(study_name="ga|random:0.1+random:0.3|digits", storage=storage)
    gaps = study.trials[0].user_attrs["gaps"]
    assert sorted(gaps) == ["random:0.1:digits:100", "random:0.3:digits:100"]
    assert study.trials[0].value == pytest.approx(sum(gaps.values()) / 2)
    references = optuna.load_study(study_name="retrain-references", storage=storage).user_attrs
    assert sorted(k.split(":", 2)[2] for k in references) == ["random:0.1:100:val", "random:0.3:100:val"]
    # benchmarks/selectivity.py reads each point's scores back against that point's own Retrain
    from benchmarks.selectivity import main as selectivity_main, stored_runs

    runs = stored_runs(storage, "digits")
    assert sorted(runs) == ["random:0.1 seed 100", "random:0.3 seed 100"]
    for forget in ("random:0.1", "random:0.3"):
        scores = study.trials[0].user_attrs["scores"][f"{forget}:digits:100"]
        retrain = next(v for k, v in references.items() if k.endswith(f":{forget}:100:val"))
        [(method, s, floor, gap)] = runs[f"{forget} seed 100"]
        assert (method, gap) == ("ga", gaps[f"{forget}:digits:100"]) and floor <= gap
        assert s == pytest.approx(scores["RA"] - 100 + scores["UA"])
        assert floor == pytest.approx(abs(s - (retrain["RA"] - 100 + retrain["UA"])) / 4)
    capsys.readouterr()
    selectivity_main(["--storage", storage, "--setting", "digits", "--target", "100"])
    table = capsys.readouterr().out.splitlines()
    assert [line.split("|")[1:3] for line in table[2:]] == [[" random:0.1 seed 100 ", " 1 (1) "],
                                                             [" random:0.3 seed 100 ", " 1 (1) "]]
    assert all(line.endswith("| 1 |") for line in table[2:])  # a floor of at most 100 leaves room
    assert main([*argv, "--forget", "random:0.1+class:3"]) == 2
    assert "all be random or all be classes" in capsys.readouterr().err


def test_tune_refuses_seeds_the_tables_report_and_untunable_methods(capsys):
    assert main(["tune", "--methods", "ft", "--seed", "0", "--trials", "1"]) == 2
    assert "seeds start at" in capsys.readouterr().err
    assert main(["tune", "--methods", "retrain", "--trials", "1"]) == 2
    assert "reference" in capsys.readouterr().err
    # rescoring and confirming each run one point per study, one run at a time
    assert main(["tune", "--methods", "ft", "--rescore", "--confirm-on", "random:0.1"]) == 2
    assert "two separate runs" in capsys.readouterr().err
    assert main(["tune", "--methods", "ft", "--rescore", "--workers", "2"]) == 2
    assert "--rescore runs one point per study" in capsys.readouterr().err


def test_a_study_over_an_earlier_search_space_is_kept_for_the_record_and_left_out_of_the_ranking(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    from wsscl_core import tune

    storage = tune.open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    name = "ga|random:0.1|digits"
    earlier = optuna.create_study(study_name=name, storage=storage)
    for key, value in {"method": "ga", "forget": "random:0.1", "settings": ["digits"], "seeds": [100],
                       "space": {"epochs": "IntRange(low=1, high=3)", "lr": "FloatRange(low=1e-05, high=0.01)"}}.items():
        earlier.set_user_attr(key, value)
    earlier.add_trial(optuna.trial.create_trial(
        params={"epochs": 2, "lr": 1e-3}, value=1.5,
        distributions={"epochs": IntDistribution(1, 3), "lr": FloatDistribution(1e-5, 1e-2, log=True)}))
    assert tune.archive_if_space_changed(storage, name, "ga") == f"{name}|earlier space 1"
    names = optuna.get_all_study_names(storage)
    assert name not in names and f"{name}|earlier space 1" in names
    kept = optuna.load_study(study_name=f"{name}|earlier space 1", storage=storage)
    assert [t.value for t in kept.trials] == [1.5] and kept.user_attrs["method"] == "ga"
    report = tune.tuning_report(storage, 1)
    assert "## GA — forget random:0.1 — earlier search space, kept for the record" in report
    assert "| GA |" not in report  # not ranked: its values cannot be a default
    current = optuna.create_study(study_name=name, storage=storage)
    current.set_user_attr("method", "ga")
    current.set_user_attr("space", tune.space_record("ga"))
    assert tune.archive_if_space_changed(storage, name, "ga") is None  # the same space: resumed, not archived


def test_the_report_says_which_study_the_defaults_came_from(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    from wsscl_core import tune
    from wsscl_core.methods import tuned_defaults

    storage = tune.open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    in_file = tuned_defaults("ga", "random")
    distributions = {"epochs": IntDistribution(1, 10), "lr": FloatDistribution(1e-5, 1e-2, log=True)}
    untouched = {"random:0.1:digits:100": 0.4, "random:0.5:digits:100": 1.6}
    for forget, params in {"random:0.1": {"epochs": 9, "lr": 2e-5}, "random:0.1+random:0.5": in_file}.items():
        study = optuna.create_study(study_name=f"ga|{forget}|digits", storage=storage)
        for key, value in {"method": "ga", "forget": forget, "settings": ["digits"], "seeds": [100],
                           "space": tune.space_record("ga"), "budget": 1, "original_gap": 3.0}.items():
            study.set_user_attr(key, value)
        if forget != "random:0.1":  # a study begun before the original was kept per point has no such line
            study.set_user_attr("original_gaps", untouched)
        study.add_trial(optuna.trial.create_trial(params=params, value=1.0, distributions=distributions,
                                                  user_attrs={"gaps": {"random:0.1:digits:100": 0.5,
                                                                       "random:0.5:digits:100": 1.5}}))
    report = tune.tuning_report(storage, 1)
    single, combined = (report.split(f"## GA — forget {forget}\n")[1].split("\n## ")[0]
                        for forget in ("random:0.1", "random:0.1+random:0.5"))
    assert "(this study's best)" in combined and "another study" not in combined
    assert "the random defaults come from another study" in single
    assert "per point ([forget set:]setting:seed): random:0.1:digits:100 0.50, random:0.5:digits:100 1.50." in combined
    assert "Not below the untouched original at: random:0.1:digits:100 (0.50 against 0.40)." in combined
    assert "untouched original at" not in single


def test_the_ranking_marks_a_study_that_has_not_finished_its_budget(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    from wsscl_core import tune

    storage = tune.open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    distributions = {"epochs": IntDistribution(1, 10), "lr": FloatDistribution(1e-5, 1e-2, log=True)}
    for method, trials in (("ga", 2), ("bs", 1)):
        study = optuna.create_study(study_name=f"{method}|class:5|digits", storage=storage)
        for key, value in {"method": method, "forget": "class:5", "settings": ["digits"], "seeds": [100],
                           "space": tune.space_record(method), "budget": 2}.items():
            study.set_user_attr(key, value)
        for i in range(trials):
            study.add_trial(optuna.trial.create_trial(params={"epochs": 1 + i, "lr": 1e-3}, value=1.0 + i,
                                                      distributions=distributions))
    ranking = tune.tuning_report(storage, 2).split("## Ranking")[1].split("\n## ")[0]
    assert "| GA | 1.000 |" in ranking and "| BS (incomplete: 1 of 2 trials) | 1.000 |" in ranking


def test_a_default_trial_stopped_before_it_finished_is_queued_again(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import TrialState

    from wsscl_core import tune

    storage = tune.open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    study = optuna.create_study(study_name="ga|random:0.1|digits", storage=storage)
    default = {"epochs": 3, "lr": 1e-3}
    distributions = {"epochs": IntDistribution(1, 10), "lr": FloatDistribution(1e-5, 1e-2, log=True)}
    study.add_trial(optuna.trial.create_trial(params=default, distributions=distributions, state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(params={"epochs": 5, "lr": 1e-4}, distributions=distributions, value=2.0))
    assert not tune._default_scored_or_queued(study, default)
    assert tune.default_of(study.get_trials(states=(TrialState.COMPLETE,))) is None  # trial 0 did not finish
    study.enqueue_trial(default, user_attrs={"default": True})
    assert tune._default_scored_or_queued(study, default)
    study.optimize(lambda trial: trial.suggest_int("epochs", 1, 10) + trial.suggest_float("lr", 1e-5, 1e-2, log=True),
                   n_trials=1)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert tune.default_of(done).params == default and tune.default_of(done).number == 2


def test_tuning_settings_train_their_originals_as_the_store_was_scored(digits_checkpoint, tmp_path):
    """Every setting after the first gets an original with the ragged-batch default recipe (the store's
    references were scored on it); a cached file trained another way is replaced, one trained so is reused."""
    from wsscl_core import tune

    cached, first = tmp_path / "original_digits.pt", tmp_path / "first.pt"
    cached.write_bytes(digits_checkpoint)
    first.write_bytes(digits_checkpoint)
    settings = tune.open_settings(["digits", "digits"], str(first), tmp_path, "cpu")
    assert settings[1].ws.recipe == tune.SETTING_RECIPE and settings[1].ws.recipe.batching == "ragged"
    assert open_workspace(cached, "digits", device="cpu").recipe == tune.SETTING_RECIPE
    written = cached.stat().st_mtime_ns
    assert tune.open_settings(["digits", "digits"], str(first), tmp_path, "cpu")[1].ws.recipe == tune.SETTING_RECIPE
    assert cached.stat().st_mtime_ns == written


def _on_machine(storage, name, machine, rescores=None):
    """Mark a study as scored on ``machine``; with ``rescores``, as the rescore of that study there."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    study.set_user_attr("machine", machine)
    if rescores is not None:
        study.set_user_attr("rescores", rescores)
        study.set_user_attr("recorded_value", optuna.load_study(study_name=rescores, storage=storage).best_value)


@pytest.mark.parametrize("variant_machine", ["cpu A; torch 2", "cpu B; torch 2"])
def test_a_round_option_variant_is_compared_only_with_parts_scored_on_its_machine(variant_machine):
    """Runs repeat to the last digit only on one machine, so a variant that clearly beats the base on its
    points replaces it only when both were scored on the same machine; otherwise the base stays and the
    refusal says why."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", None)]
    points = [f"digits:{seed}" for seed in (100, 101, 102, 103)]
    _scored_study(storage, "ft|random:0.1|digits", dict(zip(points, [2.0, 2.1, 1.9, 2.0])))
    _scored_study(storage, "ft|random:0.1|digits|cosine schedule", dict(zip(points, [1.0, 1.1, 0.9, 1.0])),
                  {"schedule": "cosine"})
    _on_machine(storage, "ft|random:0.1|digits", "cpu A; torch 2")
    _on_machine(storage, "ft|random:0.1|digits|cosine schedule", variant_machine)
    refused = []
    chosen, _ = tune.chosen_values(storage, "ft", "random:0.1", settings, on_refused=refused.append)
    apart = variant_machine != "cpu A; torch 2"
    assert chosen == ({"lr": 0.01} if apart else {"lr": 0.01, "schedule": "cosine"})
    assert bool(refused) == apart and all("scored on different machines" in r for r in refused)


def test_a_study_scored_again_on_the_variants_machine_is_paired_there():
    """The base was scored on machine A, the variant on B: not compared. Once the base's chosen point is scored
    again on B (and, where the variants pool confirmation points, its confirmation too), the two are paired on
    B, and the verdict follows B's points, whatever A's said."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", None)]
    objective = [f"digits:{seed}" for seed in (100, 101, 102, 103)]
    fresh = [f"digits:{seed}" for seed in (104, 105)]
    base, variant = "ft|random:0.1|digits", "ft|random:0.1|digits|cosine schedule"
    _scored_study(storage, base, dict(zip(objective, [1.0, 1.1, 0.9, 1.0])))  # on A, level with the variant
    _on_machine(storage, base, "cpu A")
    _scored_study(storage, variant, dict(zip(objective, [1.0, 1.1, 0.9, 1.0])), {"schedule": "cosine"})
    _on_machine(storage, variant, "cpu B")
    refused = []
    assert tune.chosen_values(storage, "ft", "random:0.1", settings, on_refused=refused.append)[0] == {"lr": 0.01}
    assert refused == []  # not lower than the base: nothing to refuse
    # on B the base's point scores 1.0 higher at every point: the variant's gain there is clear
    _scored_study(storage, tune.rescore_name(base, "cpu B"), dict(zip(objective, [2.0, 2.1, 1.9, 2.0])))
    _on_machine(storage, tune.rescore_name(base, "cpu B"), "cpu B", rescores=base)
    # but B's base value (2.0) is above the variant's, A's (1.0) is not: values compare on the shared machine
    chosen, value = tune.chosen_values(storage, "ft", "random:0.1", settings)
    assert chosen == {"lr": 0.01, "schedule": "cosine"} and value == pytest.approx(1.0)
    report = tune.tuning_report(storage, 1)
    assert "over the base rounds +1.000 ± 0.000 (a clear gain, clear above 2.5 standard errors, both scored on cpu B)" in report
    assert "## Chosen points scored again on another machine" in report
    assert "| FT — forget random:0.1 | objective: forget random:0.1, seeds None | 1.000 | 2.000 | cpu B |" in report
    assert "## FT — forget random:0.1\n" in report and "|on cpu B" not in report  # not ranked as a study
    # with confirmations pooled, the base's evidence on B needs its confirmation on B as well
    _scored_study(storage, tune.confirmation_name(base), dict(zip(fresh, [1.0, 1.0])), confirms=base)
    _on_machine(storage, tune.confirmation_name(base), "cpu A")
    _scored_study(storage, tune.confirmation_name(variant), dict(zip(fresh, [1.0, 1.0])), {"schedule": "cosine"},
                  confirms=variant)
    _on_machine(storage, tune.confirmation_name(variant), "cpu B")
    evidence = tune.round_option_evidence(storage, "ft", "random:0.1", settings)
    assert [sorted(c.by_machine) for c in evidence] == [["cpu A"], ["cpu B"]]
    assert tune.chosen_values(storage, "ft", "random:0.1", settings)[0] == {"lr": 0.01}
    rescored_fresh = tune.rescore_name(tune.confirmation_name(base), "cpu B")
    _scored_study(storage, rescored_fresh, dict(zip(fresh, [2.0, 2.0])), confirms=None)
    _on_machine(storage, rescored_fresh, "cpu B", rescores=tune.confirmation_name(base))
    evidence = tune.round_option_evidence(storage, "ft", "random:0.1", settings)
    assert sorted(evidence[0].by_machine) == ["cpu A", "cpu B"] and len(evidence[0].by_machine["cpu B"].gaps) == 6
    assert tune.chosen_values(storage, "ft", "random:0.1", settings)[0] == {"lr": 0.01, "schedule": "cosine"}


def test_rescore_parts_scores_the_chosen_point_again_here(digits_workspace):
    """tune --rescore runs, on this machine, the chosen point of each study that a variant scored here is judged
    against but that was scored elsewhere, with that study's round options, scored exactly as a tuning trial;
    once scored here it is not run again, and a study already scored here is not rescored."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    settings = [tune.TuneSetting("digits", digits_workspace)]
    here = tune.machine_identity(digits_workspace.device)
    point = {"epochs": 1, "lr": 0.01}
    distributions = {"epochs": optuna.distributions.IntDistribution(1, 10),
                     "lr": optuna.distributions.FloatDistribution(1e-3, 5e-2)}
    for name, options, machine in (("ft|random:0.1|digits", None, "another cpu"),
                                   ("ft|random:0.1|digits|plain rounds", {"augment_rounds": False}, here)):
        study = optuna.create_study(study_name=name, storage=storage)
        for key, attr in {"method": "ft", "forget": "random:0.1", "settings": ["digits"], "budget": 1, "seeds": [100],
                          "round_options": options, "machine": machine}.items():
            if attr is not None:
                study.set_user_attr(key, attr)
        study.add_trial(optuna.trial.create_trial(params=point, distributions=distributions, value=1.0,
                                                  user_attrs={"gaps": {"digits:100": 1.0}}))
    heard = []
    rescores = tune.rescore_parts(storage, "ft", "random:0.1", settings, on_scored=lambda s, t: heard.append(t.value))
    assert [r.study_name for r in rescores] == [tune.rescore_name("ft|random:0.1|digits", here)]
    assert tune.scored_on(rescores[0]) == here and rescores[0].user_attrs["rescores"] == "ft|random:0.1|digits"
    reference = next(iter(optuna.load_study(study_name=tune.REFERENCES, storage=storage).user_attrs.values()))
    result = run(digits_workspace, RunRequest.parse("ft", "random:0.1", point, 100, "val"))  # the base: augmented
    assert heard == [pytest.approx(avg_gap(result.scores(), reference))]
    assert [sorted(c.by_machine) for c in tune.round_option_evidence(storage, "ft", "random:0.1", settings)] == [
        sorted(["another cpu", here]), [here]]
    again = tune.rescore_parts(storage, "ft", "random:0.1", settings)
    assert [len(r.trials) for r in again] == []  # nothing left to score here


def test_a_study_records_the_machine_its_trials_are_scored_on():
    """A new study takes this machine; one with trials from before machines were recorded, or begun on another
    machine, becomes "several machines" once scored here."""
    import optuna

    from wsscl_core import tune

    storage = optuna.storages.InMemoryStorage()
    here = tune.machine_identity(torch.device("cpu"))
    assert "torch" in here
    fresh = optuna.create_study(study_name="fresh", storage=storage)
    tune.record_machine(fresh, torch.device("cpu"))
    assert tune.scored_on(fresh) == here
    _scored_study(storage, "older", {"digits:100": 1.0})
    older = optuna.load_study(study_name="older", storage=storage)
    assert tune.scored_on(older) == tune.UNRECORDED_MACHINE
    tune.record_machine(older, torch.device("cpu"))
    assert tune.scored_on(older) == tune.SEVERAL_MACHINES
