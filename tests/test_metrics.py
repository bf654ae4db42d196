"""Metrics on hand-made cases and on a real trained model."""

import numpy as np
import pytest
import torch

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.metrics import (accuracy, avg_gap, confusion_matrix, evaluate, mia_efficacy, per_class_accuracy,
                                true_label_confidence)


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


def test_evaluate_on_trained_model(digits, digits_trained):
    model, _ = digits_trained
    split = make_forget_split(digits.train.labels, ForgetSpec.parse("class:2"))
    ev = evaluate(model, digits, split)
    # the model was trained on the forget class, so it still knows it
    assert ev.UA < 20 and ev.RA > 90 and ev.TA > 85
    assert ev.confusion_test.sum() == len(digits.test)
    assert ev.TA_remaining is not None and ev.TA_remaining >= 0
    assert len(ev.conf_forget) == split.num_forget
    assert 0 <= ev.MIA <= 100


def test_evaluate_leaves_training_mode_alone(digits, trained_copy):
    split = make_forget_split(digits.train.labels, ForgetSpec.parse("random:0.2"))
    trained_copy.train()
    evaluate(trained_copy, digits, split)
    assert trained_copy.training
