"""The training engine: augmentation, masks, progress, cancel, divergence, determinism."""

import copy
import threading

import pytest
import torch
import torch.nn.functional as F

from wsscl_core.engine import (Phase, Round, StepOutput, StopRule, TrainRecipe, augment_batch, batch_bounds,
                               cross_entropy_loss, run_phases)
from wsscl_core.errors import RunCancelled, RunDiverged
from wsscl_core.models import build_model


def _fresh(digits, seed=0):
    torch.manual_seed(seed)
    return build_model("compact", digits.channels, digits.num_classes, digits.mean, digits.std)


def _matching_transforms(x: torch.Tensor, out: torch.Tensor, padding: int) -> list[tuple[int, int, bool]]:
    """For each image (pixels all distinct), the one (dy, dx, flipped) crop of its zero-padded copy that ``out`` is."""
    _, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    found = []
    for i in range(len(x)):
        crops = {(dy, dx): padded[i, :, dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1)
                 for dx in range(2 * padding + 1)}
        hits = [(dy, dx, flip) for (dy, dx), crop in crops.items() for flip in (False, True)
                if torch.equal(out[i], crop.flip(2) if flip else crop)]
        assert len(hits) == 1, f"image {i} is no shifted/flipped copy of its input"
        found.append(hits[0])
    return found


def test_augment_is_a_shifted_and_flipped_copy():
    """Pixels all distinct and non-zero: each output is one crop of its zero-padded image, maybe mirrored,
    so its non-zero pixels are a sub-multiset of the input's; over 200 images every offset and both
    flips occur, and the batch changes."""
    x = torch.rand(200, 2, 5, 6, generator=torch.Generator().manual_seed(0)) + 1
    g = torch.Generator().manual_seed(1)
    out = augment_batch(x, padding=2, flip=True, generator=g)
    assert out.shape == x.shape and not torch.equal(out, x)
    transforms = _matching_transforms(x, out, padding=2)
    assert {dy for dy, _, _ in transforms} == {dx for _, dx, _ in transforms} == set(range(5))
    assert {flip for _, _, flip in transforms} == {False, True}
    for i in range(len(x)):
        values, counts = out[i][out[i] != 0].unique(return_counts=True)
        assert torch.all(counts == 1) and torch.isin(values, x[i]).all()
    shifted = _matching_transforms(x, augment_batch(x, 1, False, g), padding=1)
    assert {flip for _, _, flip in shifted} == {False} and len({(dy, dx) for dy, dx, _ in shifted}) == 9
    mirrored = _matching_transforms(x, augment_batch(x, 0, True, g), padding=0)
    assert {flip for _, _, flip in mirrored} == {False, True}
    assert torch.equal(augment_batch(x, 0, False, g), x)
    same_seed = [augment_batch(x, 2, True, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*same_seed), "the run's generator alone decides the crops and flips"


def test_same_seed_same_result_on_cpu(digits):
    recipe = TrainRecipe(epochs=1, batch_size=128)
    idx = torch.arange(len(digits.train))
    a, b = _fresh(digits), _fresh(digits)
    run_phases(a, digits, [recipe.phase(idx)], seed=3)
    run_phases(b, digits, [recipe.phase(idx)], seed=3)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_progress_events_cover_the_run(digits):
    events = []
    phases = [Phase("one", "First", [Round("r", torch.arange(300), cross_entropy_loss, "retain")], epochs=2, lr=0.01,
                    batch_size=100),
              Phase("two", "Second", [Round("f", torch.arange(300, 400), cross_entropy_loss, "forget")], epochs=1,
                    lr=0.01, batch_size=50)]
    steps = run_phases(_fresh(digits), digits, phases, on_progress=events.append)
    assert steps == 2 * 3 + 2
    ends = [e for e in events if e.kind == "phase_end"]
    assert [e.phase for e in ends] == ["one", "two"]
    assert ends[0].step == ends[0].total_steps == 6
    assert "retain_acc" in ends[0].metrics and "forget_acc" in ends[1].metrics
    assert events[-1].kind == "end" and events[-1].fraction_done == pytest.approx(1.0)
    assert all(e.eta_s is None or e.eta_s >= 0 for e in events)


def test_cancel_stops_between_steps(digits):
    flag = threading.Event()
    seen = []

    def on_progress(e):
        seen.append(e)
        if e.kind == "step":
            flag.set()

    model = _fresh(digits)
    recipe = TrainRecipe(epochs=50, batch_size=16)
    with pytest.raises(RunCancelled):
        run_phases(model, digits, [recipe.phase(torch.arange(len(digits.train)))], on_progress=on_progress,
                   cancel=flag)
    steps_done = max(e.step for e in seen)
    assert steps_done < recipe.phase(torch.arange(len(digits.train))).total_steps() // 10


def test_cancel_before_start_changes_nothing(digits):
    model = _fresh(digits)
    before = copy.deepcopy(model.state_dict())
    flag = threading.Event()
    flag.set()
    with pytest.raises(RunCancelled):
        run_phases(model, digits, [TrainRecipe(epochs=1).phase(torch.arange(100))], cancel=flag)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_zero_mask_freezes_weights_including_decay_and_momentum(digits):
    model = _fresh(digits)
    before = {k: v.clone() for k, v in model.named_parameters()}
    mask = {name: torch.zeros_like(p) if name.startswith("body.0") else torch.ones_like(p)
            for name, p in model.named_parameters()}
    phase = Phase("m", "Masked", [Round("r", torch.arange(400), cross_entropy_loss)], epochs=2, lr=0.05,
                  batch_size=64, momentum=0.9, weight_decay=5e-2, mask=mask)
    run_phases(model, digits, [phase])
    for name, p in model.named_parameters():
        if name.startswith("body.0"):
            assert torch.equal(p, before[name]), f"{name} moved under a zero mask"
        elif name.endswith("weight"):
            assert not torch.equal(p, before[name]), f"{name} did not train"


def test_divergence_stops_the_run(digits):
    def exploding(model, batch):
        logits = model(batch.x)
        return StepOutput(logits.sum() * float("inf"), {}, logits)

    phase = Phase("x", "Exploding", [Round("r", torch.arange(200), exploding)], epochs=1, lr=0.1, batch_size=50)
    with pytest.raises(RunDiverged, match="diverged"):
        run_phases(_fresh(digits), digits, [phase])


def test_empty_round_is_refused(digits):
    from wsscl_core.errors import WssclError

    phase = Phase("x", "Empty", [Round("r", torch.arange(0), cross_entropy_loss)], epochs=1, lr=0.1)
    with pytest.raises(WssclError, match="no samples"):
        run_phases(_fresh(digits), digits, [phase])


@pytest.mark.parametrize("num_negatives", [None, 7])
def test_negatives_come_from_their_pool_in_the_asked_number(digits, num_negatives):
    seen = []

    def record(model, batch):
        seen.append((len(batch.x), len(batch.x_view), batch.x_neg.clone()))
        return cross_entropy_loss(model, batch)

    pool = torch.arange(500, 600)
    pool_images = digits.train.images[pool].float().div(255).flatten(1)
    phase = Phase("x", "Contrast", [Round("f", torch.arange(40), record, "forget", augment=False, two_views=True,
                                          negatives=pool, num_negatives=num_negatives)], epochs=1, lr=0.01,
                  batch_size=16)
    run_phases(_fresh(digits), digits, [phase])
    assert [(n, views) for n, views, _ in seen] == [(13, 13), (13, 13), (14, 14)]  # 40 in even batches
    for _, _, negatives in seen:
        assert len(negatives) == (num_negatives or 16)
        largest_pixel_difference = (negatives.flatten(1)[:, None] - pool_images[None]).abs().amax(2)
        assert torch.all(largest_pixel_difference.min(1).values == 0)  # every negative is an image of the pool


def test_stop_rule_ends_a_forgetting_phase_once_forget_accuracy_falls_to_held_out(memorising_digits_checkpoint,
                                                                                  digits):
    """Gradient ascent with a check every step, from a memorising original: the phase ends early, at the first
    check where the forget sample's accuracy is at or below the held-out sample's, and reports both; the
    returned step count is the steps taken."""
    from wsscl_core.methods.losses import negated_cross_entropy
    from wsscl_core.workspace import open_workspace

    original = open_workspace(memorising_digits_checkpoint, digits, device="cpu").original

    forget = torch.arange(200)
    rule = StopRule(forget, digits.test, every=1, sample=200)
    check = rule.probe(digits)
    start_forget, start_held = check(original)
    assert start_forget > start_held, "the original fits its own train images better than unseen ones"
    events = []
    phase = Phase("ga", "GA", [Round("forget", forget, negated_cross_entropy, "forget")], epochs=20, lr=0.02,
                  batch_size=20, stop=rule)
    model = copy.deepcopy(original)
    steps = run_phases(model, digits, [phase], on_progress=events.append)
    end = next(e for e in events if e.kind == "phase_end")
    assert 0 < steps < phase.total_steps() and end.step == steps == end.metrics["stopped_at_step"]
    assert end.metrics["stop_forget_accuracy"] <= end.metrics["stop_holdout_accuracy"]
    assert check(model) == (end.metrics["stop_forget_accuracy"], end.metrics["stop_holdout_accuracy"])
    assert events[-1].kind == "end" and events[-1].fraction_done == pytest.approx(1.0)


def test_a_stop_rule_that_never_holds_changes_nothing(digits_trained, digits):
    """Fine-tuning on the forget set keeps it above held-out accuracy: every step runs, and the checks
    (their own samples, their own generator, eval mode) leave the weights exactly as without the rule."""
    forget = torch.arange(200)

    def phase(stop):
        return Phase("ft", "FT", [Round("forget", forget, cross_entropy_loss, "forget")], epochs=2, lr=0.01,
                     batch_size=50, stop=stop)

    with_rule, without = copy.deepcopy(digits_trained[0]), copy.deepcopy(digits_trained[0])
    steps = run_phases(with_rule, digits, [phase(StopRule(forget, digits.test, every=1))], seed=4)
    assert steps == run_phases(without, digits, [phase(None)], seed=4) == phase(None).total_steps()
    for (name, a), b in zip(with_rule.state_dict().items(), without.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_phase_plans_exactly_the_images_it_processes(digits):
    """Batches, second views and negatives, with a capped round and a last short batch: the count a cost cap
    relies on matches what the loop feeds the model."""
    seen = []

    def counting(model, batch):
        images = [batch.x, batch.x_view, batch.x_neg]
        seen.append(sum(len(x) for x in images if x is not None))
        return cross_entropy_loss(model, batch)

    n = len(digits.train.labels)
    forget, retain = torch.arange(0, 150), torch.arange(150, n)
    phase = Phase("p", "P", [Round("forget", forget, counting, "forget", two_views=True, negatives=retain,
                                   num_negatives=40),
                             Round("retain", retain, counting, "retain", max_steps=3)],
                  epochs=2, lr=0.001, batch_size=64)
    run_phases(_fresh(digits), digits, [phase])
    # forget: 3 batches (50 each) twice over plus 40 negatives each; retain: 3 full batches of 64
    assert phase.planned_images() == sum(seen) == 2 * ((150 * 2 + 3 * 40) + 3 * 64)


@pytest.mark.parametrize("n, batch_size", [(900, 128), (1000, 128), (40, 16), (7, 8), (256, 128)])
def test_batches_cover_every_sample_once_in_the_same_number_of_steps(n, batch_size):
    """Both ways of cutting an epoch give ceil(n / batch_size) contiguous batches over all n samples; even
    batches differ in size by at most one, ragged ones are full but the last; a pass cut short by
    max_steps takes full batches either way."""
    steps = -(-n // batch_size)
    for batching in ("even", "ragged"):
        bounds = batch_bounds(n, batch_size, batching)
        assert len(bounds) == steps and bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(end == start for (_, end), (start, _) in zip(bounds, bounds[1:]))
    even = [end - start for start, end in batch_bounds(n, batch_size, "even")]
    ragged = [end - start for start, end in batch_bounds(n, batch_size, "ragged")]
    assert max(even) - min(even) <= 1 and max(even) <= batch_size
    assert ragged[:-1] == [batch_size] * (steps - 1) and ragged[-1] == n - (steps - 1) * batch_size
    if steps > 1:
        for batching in ("even", "ragged"):
            cut = batch_bounds(n, batch_size, batching, max_steps=steps - 1)
            assert [end - start for start, end in cut] == [batch_size] * (steps - 1)


def test_the_recipe_batching_reaches_original_training_and_unlearning(tmp_path, digits, monkeypatch):
    """New recipes cut even batches; a recipe recorded before the choice existed repeats ragged ones, in
    the original's training and in every unlearning run on it (Retrain's and each method's rounds)."""
    from wsscl_core import engine
    from wsscl_core.checkpoints import save_checkpoint
    from wsscl_core.data import ForgetSpec, make_forget_split
    from wsscl_core.workspace import open_workspace, train_original

    assert TrainRecipe().batching == "even" and TrainRecipe.from_dict(TrainRecipe().to_dict()) == TrainRecipe()
    recorded = {k: v for k, v in TrainRecipe(epochs=1).to_dict().items() if k != "batching"}
    assert TrainRecipe.from_dict(recorded).batching == "ragged"
    assert TrainRecipe.from_dict(None).batching == "even"  # nothing recorded: today's default

    sizes = []

    def counting(model, batch):
        sizes.append(len(batch.x))
        return cross_entropy_loss(model, batch)

    monkeypatch.setattr(engine, "cross_entropy_loss", counting)  # the loss a recipe's phase trains with
    n = len(digits.train)
    assert n % 128, "the digits train split must leave a partial batch for this test to tell the two apart"
    ragged = [128] * (n // 128) + [n % 128]
    model, meta = train_original(digits, "compact", TrainRecipe.from_dict(recorded), device="cpu")
    assert sizes == ragged and meta["recipe"]["batching"] == "ragged"
    sizes.clear()
    train_original(digits, "compact", TrainRecipe(epochs=1), device="cpu")
    assert len(sizes) == len(ragged) and max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    sizes.clear()
    meta["recipe"] = recorded  # as a checkpoint written before batching was recorded
    ws = open_workspace(save_checkpoint(tmp_path / "old.pt", model, meta), digits, device="cpu")
    ctx = ws.context(make_forget_split(digits.train.labels, ForgetSpec.parse("random:0.1"), digits.num_classes))
    ctx.train(ctx.copy_original(), [Phase("p", "P", [Round("r", torch.arange(n), counting)], epochs=1, lr=0.001,
                                          batch_size=128)])
    assert sizes == ragged
