from wsscl_core.metrics import accuracy, predict_logits


def test_digits_model_learns(digits, digits_trained):
    model, meta = digits_trained
    acc = accuracy(predict_logits(model, digits.test.images), digits.test.labels)
    assert acc > 85, acc
    assert meta["metrics"]["TA"] == acc
