"""One inference path: training validation, the benchmarks and `ussnb separate` give the same estimates."""
import numpy as np
import pytest
import torch

from ussnb.eval import protocol
from ussnb.errors import SeparationError
from ussnb.inference import apply_separator, forward_chunks
from ussnb.separators import build_separator
from ussnb.train import separate_batch


class Gain(torch.nn.Module):
    """y = c[0]·x, trimmed by `trim` samples (as an STFT model may do)."""

    sample_rate = 1000

    def __init__(self, trim: int = 0):
        super().__init__()
        self.trim = trim

    def forward(self, x, c):
        y = x * c[:, :1, None]
        return y[..., :y.shape[-1] - self.trim] if self.trim else y


@pytest.mark.parametrize("trim", [0, 7])
def test_forward_pads_trimmed_output_and_batches_alike(trim):
    x = np.random.default_rng(0).standard_normal((5, 300)).astype(np.float32)
    c = np.full((5, 2), 0.5, np.float32)
    y = forward_chunks(Gain(trim), x, c, batch_size=2)
    assert y.shape == x.shape
    np.testing.assert_allclose(y[:, :300 - trim], 0.5 * x[:, :300 - trim], rtol=1e-6)
    assert not y[:, 300 - trim:].any()


def test_chunking_modes_agree_for_a_pointwise_model():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2345)).astype(np.float32)
    c = rng.uniform(0.1, 1, (3, 4)).astype(np.float32)
    whole = apply_separator(Gain(), x, c, segment_seconds=None)
    plain = apply_separator(Gain(), x, c, segment_seconds=0.5, overlap=0.0, batch_size=3)
    faded = apply_separator(Gain(), x, c, segment_seconds=0.5, overlap=0.25, batch_size=3)
    np.testing.assert_allclose(whole, x * c[:, :1], rtol=1e-6)
    np.testing.assert_allclose(plain, whole, rtol=1e-6)
    np.testing.assert_allclose(faded, whole, rtol=1e-5, atol=1e-6)
    assert apply_separator(Gain(), x[0], c[0], segment_seconds=0.5).shape == (2345,)


def test_validation_and_benchmark_use_the_same_path():
    torch.manual_seed(0)
    model = build_separator("meltcn", "tiny", condition_size=3).eval()
    sr = model.sample_rate
    x = np.random.default_rng(2).standard_normal((4, 2 * sr)).astype(np.float32) * 0.1
    c = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    val = separate_batch(model, x, c)
    bench = protocol.separate_items(model, x, c, batch_size=4)  # 2 s items = one chunk each
    np.testing.assert_allclose(val, bench, rtol=1e-5, atol=1e-6)


def test_non_finite_output_is_a_clear_error():
    class Broken(Gain):
        def forward(self, x, c):
            return x * float("nan")

    with pytest.raises(SeparationError, match="NaN"):
        apply_separator(Broken(), np.ones((1, 100), np.float32), np.ones((1, 1), np.float32))
    with pytest.raises(SeparationError, match="2 mixtures but 3 conditions"):
        apply_separator(Gain(), np.ones((2, 100), np.float32), np.ones((3, 1), np.float32))
