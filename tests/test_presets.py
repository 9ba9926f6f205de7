import numpy as np

from membed import data, presets, strategies


def test_every_strategy_has_accuracy_pairs():
    for name in strategies.names():
        pairs = presets.accuracy_pairs(name, 943, 1682)
        assert pairs, name
        for pair in pairs:
            assert name in (pair.user, pair.item)
            assert pair.error is None or "cannot" in pair.error or pair.error


def test_compression_presets_reach_their_ratio_or_say_why():
    for pair in presets.accuracy_pairs("hash", 10_000, 20_000):
        target = float(pair.preset.rstrip("x"))
        for vocab, options in ((10_000, pair.user_options), (20_000, pair.item_options)):
            ratio = vocab * 64 / strategies.cost("hash", vocab, 64, **options).params
            assert 0.8 * target <= ratio <= 1.25 * target
    (unreachable,) = [p for p in presets.accuracy_pairs("qr", 943, 1682) if p.preset == "100x"]
    assert "cannot reach 100x" in unreachable.error


def test_quantized_is_trained_as_full_then_converted():
    ratings = data.planted_ratings(300, 200, 6000, rank=4, noise_sigma=0.1, seed=0)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=0)
    int8 = next(p for p in presets.accuracy_pairs("quantized", 300, 200) if p.preset == "int8")
    model, result = presets.fit_pair(int8, ratings, train_idx, val_idx, dim=16, epochs=3, batch_size=64)
    user = model.get_layer("user_embedding")
    assert user.strategy_name == "quantized" and user.storage == "int8"
    assert result.params == (300 + 200) * (16 + 1)
    # The converted model is evaluated: its MSE is that of the trained float model, nearly.
    baseline_model, baseline = presets.fit_pair(presets.BASELINE, ratings, train_idx, val_idx, dim=16,
                                                epochs=3, batch_size=64)
    assert abs(result.val_mse[-1] - baseline.val_mse[-1]) < 0.02
    assert result.val_mse[:-1] == baseline.val_mse[:-1]
    assert np.isfinite(result.val_mse).all()
