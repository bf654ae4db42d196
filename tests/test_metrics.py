"""Metrics on hand-made cases and on a real trained model."""

import numpy as np
import pytest
import torch

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.metrics import (accuracy, avg_gap, confusion_matrix, evaluate, loss_threshold_auc, mia_efficacy,
                                per_class_accuracy, per_sample_loss, true_label_confidence)


def test_accuracy_and_confidence_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    assert accuracy(logits, labels) == pytest.approx(200 / 3)
    conf = true_label_confidence(logits, labels)
    assert conf[0] == pytest.approx(np.exp(2) / (np.exp(2) + 1))
    assert conf[2] == pytest.approx(1 / (np.exp(3) + 1))


def test_confusion_and_per_class():
    logits = torch.eye(3)[[0, 1, 1, 2, 0]]
    labels = torch.tensor([0, 1, 2, 2, 2])
    cm = confusion_matrix(logits, labels, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
    assert per_class_accuracy(cm).tolist() == pytest.approx([100.0, 100.0, 100 / 3])


def test_mia_efficacy_separates_members_from_strangers():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.95, 1.0, 2000)      # memorised: confident
    non_members = rng.uniform(0.2, 0.7, 2000)    # never seen: unsure
    # forget samples that look like never-trained-on data → ~100 % predicted non-member
    assert mia_efficacy(members, non_members, rng.uniform(0.2, 0.7, 500)) > 95
    # forget samples that look memorised → ~0 %
    assert mia_efficacy(members, non_members, rng.uniform(0.95, 1.0, 500)) < 5


def test_avg_gap_is_mean_absolute_difference():
    a = {"UA": 5.0, "RA": 99.0, "TA": 90.0, "MIA": 10.0}
    b = {"UA": 7.0, "RA": 100.0, "TA": 91.0, "MIA": 6.0}
    assert avg_gap(a, b) == pytest.approx((2 + 1 + 1 + 4) / 4)
    assert avg_gap(a, a) == 0


def test_avg_gap_takes_the_kept_classes_ta_when_both_sides_have_it():
    """Class forgetting: TA on the kept classes replaces TA, and only when both runs carry it."""
    a = {"UA": 100.0, "RA": 99.0, "TA": 80.0, "MIA": 100.0, "TA_remaining": 89.0}
    b = {"UA": 100.0, "RA": 100.0, "TA": 90.0, "MIA": 100.0, "TA_remaining": 92.0}
    assert avg_gap(a, b) == pytest.approx((0 + 1 + 3 + 0) / 4)
    without = {k: v for k, v in b.items() if k != "TA_remaining"}
    assert avg_gap(a, without) == pytest.approx((0 + 1 + 10 + 0) / 4)
    assert avg_gap(without, a) == pytest.approx((0 + 1 + 10 + 0) / 4)


def test_evaluate_on_trained_model(digits, digits_trained):
    """Every number recomputed from the model's own logits; the MIA's members are the retain samples."""
    model, _ = digits_trained
    split = make_forget_split(digits.train.labels, ForgetSpec.parse("class:2"))
    ev = evaluate(model, digits, split)
    # the model was trained on the forget class, so it still knows it
    assert ev.UA < 20 and ev.RA > 90 and ev.TA > 85
    assert ev.confusion_test.sum() == len(digits.test)
    with torch.no_grad():
        def probs(images):
            return torch.softmax(model.eval()(images.float().div(255)), 1)

        p_f, p_r, p_t = (probs(digits.train.images[split.forget]), probs(digits.train.images[split.retain]),
                         probs(digits.test.images))
    y_f, y_r, y_t = digits.train.labels[split.forget], digits.train.labels[split.retain], digits.test.labels
    kept = y_t != 2
    assert ev.UA == pytest.approx(100 - 100 * float((p_f.argmax(1) == y_f).float().mean()))
    assert ev.RA == pytest.approx(100 * float((p_r.argmax(1) == y_r).float().mean()))
    assert ev.TA_remaining == pytest.approx(100 * float((p_t[kept].argmax(1) == y_t[kept]).float().mean()))
    for conf, p, y in ((ev.conf_forget, p_f, y_f), (ev.conf_retain, p_r, y_r), (ev.conf_test, p_t, y_t)):
        np.testing.assert_allclose(conf, p.gather(1, y[:, None]).squeeze(1).numpy(), rtol=1e-4, atol=1e-6)
    assert ev.MIA == mia_efficacy(ev.conf_retain, ev.conf_test, ev.conf_forget)


def test_evaluate_leaves_training_mode_alone(digits, trained_copy):
    split = make_forget_split(digits.train.labels, ForgetSpec.parse("random:0.2"))
    trained_copy.train()
    evaluate(trained_copy, digits, split)
    assert trained_copy.training


def test_a_zero_confidence_gives_a_finite_loss_the_attack_can_rank():
    """float32 softmax underflows to 0 on a confidently wrong sample: the loss is clipped, not infinite,
    so the loss-threshold AUC still ranks it (as the most non-member-like sample)."""
    losses = per_sample_loss(np.array([0.0, 0.5, 1.0], dtype=np.float32))
    assert np.isfinite(losses).all() and losses[0] == pytest.approx(-np.log(1e-12))
    assert losses[2] == 0.0
    assert loss_threshold_auc(per_sample_loss(np.array([0.0, 0.9])), per_sample_loss(np.array([0.5]))) == 0.5
