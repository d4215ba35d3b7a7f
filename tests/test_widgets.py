"""The notebooks' widgets (ussnb.widgets) driven without a browser: set a control, read what the output area
was given. The separation panel runs the real streamed separation (an identity "separator": the written wav
must equal the clip) and turns a user's mistakes into messages, never exceptions."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import soundfile as sf
from IPython.display import HTML, Audio

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from tests.test_separation import MIDS, NAMES, SR, _identity_bundle, _noise  # noqa: E402
from ussnb import widgets  # noqa: E402


def _kinds(area):
    return [type(o).__name__ for o in area.shown]


# ----------------------------------------------------------------------------------------------- 05
@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, _noise(5.0, seed=3), SR, subtype="FLOAT")
    return path


def _picker(clip, tmp_path, **kw):
    mixture, _ = sf.read(clip, dtype="float32")
    return widgets.SeparationPicker(_identity_bundle(), clip, tmp_path / "queries", mixture, progress=False, **kw)


def test_separate_writes_wav_shows_player_and_figure(clip, tmp_path):
    p = _picker(clip, tmp_path, preselect=["Piano", "Snare drum", "not a class of the model"])
    assert p.picker.value == ("Piano", "Snare drum")  # detected classes the model knows are picked
    p.button.click()  # the real on_click path
    assert set(p.results) == {"Piano", "Snare drum"}
    x, _ = sf.read(clip, dtype="float32")
    for name, path in p.results.items():
        y, sr = sf.read(path, dtype="float32")
        assert sr == SR and path.parent == tmp_path / "queries"
        np.testing.assert_allclose(y, x, atol=1e-5)  # identity separator: the clip itself
    assert _kinds(p.area) == ["HTML", "Audio", "HTML", "Audio", "Figure"]
    players = [o for o in p.area.shown if isinstance(o, Audio)]
    assert all(len(a.data) > 1000 for a in players)
    fig = p.area.shown[-1]
    assert [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")] == ["mixture", "Piano",
                                                                                        "Snare drum"]
    assert not p.area.messages
    assert not p.button.disabled and p.button.description == "separate"
    assert "2 separated" in p.status.value


def test_unknown_class_is_a_message_with_closest_names(clip, tmp_path):
    p = _picker(clip, tmp_path)
    assert "nothing was detected" in p.status.value
    p.filter.value = "pian"
    assert p.picker.options == ("Piano",)
    p.filter.value = "snare drm"  # matches no option: the text itself becomes the query
    assert p.picker.options == () and "no class contains" in p.status.value
    assert p.separate() == {}
    (msg,) = p.area.messages
    assert msg.startswith("error: unknown class 'snare drm'") and "Snare drum" in msg
    assert not (tmp_path / "queries").exists()  # refused before any work
    assert "0 separated, 1 failed" in p.status.value and not p.button.disabled


def test_nothing_picked_and_nothing_detected_are_messages(tmp_path):
    p0 = _picker_silent(tmp_path)
    assert p0.separate() == {}
    assert p0.area.messages == ["warning: pick one or more classes (or type a class name into the filter)"]
    p0.picker.value = ("Piano",)
    out = p0.separate()
    assert list(out) == ["Piano"] and out["Piano"].is_file()  # the (silent) wav is still written
    (msg,) = p0.area.messages
    assert msg.startswith("warning: nothing of 'Piano' detected in this clip")
    assert "Audio" not in _kinds(p0.area)  # no player for a silent track
    assert _kinds(p0.area)[-1] == "Figure"


def _picker_silent(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(3 * SR, np.float32), SR, subtype="FLOAT")
    return _picker(path, tmp_path)


def test_a_failing_separation_is_a_message_not_a_traceback(clip, tmp_path):
    p = _picker(clip, tmp_path)
    p.clip_path = tmp_path / "gone.wav"  # the clip vanished
    p.picker.value = ("Piano",)
    assert p.separate() == {}
    (msg,) = p.area.messages
    assert msg.startswith("error: ") and "gone.wav" in msg
    assert not p.button.disabled


# ----------------------------------------------------------------------------------------------- 01
def _dataset():
    clips = [SimpleNamespace(clip_id="c0", labels=[MIDS[0]]), SimpleNamespace(clip_id="c1", labels=[MIDS[1], MIDS[2]])]
    ds = SimpleNamespace(label_index={m: i for i, m in enumerate(MIDS)}, label_names=dict(zip(MIDS, NAMES)),
                         sample_rate=SR)
    frames = [np.random.default_rng(i).uniform(0, 1, (300, len(MIDS))) for i in range(2)]
    waves = [_noise(3.0, seed=i) for i in range(2)]
    return ds, clips, frames, waves


def test_clip_picker_draws_the_picked_clip():
    ds, clips, frames, waves = _dataset()
    events = {"c1": [{"mid": MIDS[1], "label": NAMES[1], "onset": 0.5, "offset": 1.5, "labelled": True}]}
    p = widgets.ClipPicker(ds, clips, frames, lambda i: waves[i], events)
    assert _kinds(p.area) == ["Figure", "Audio"]
    assert p.area.shown[0].axes[0].get_title() == "c0: Male speech, man speaking"
    p.picker.value = 1
    assert p.area.shown[0].axes[0].get_title() == "c1: Piano, Snare drum"
    assert p.area.shown[1].data != Audio(waves[0], rate=SR).data  # the picked clip's own player
    assert _kinds(p.area) == ["Figure", "Audio"]  # replaced, not appended


def test_clip_picker_error_is_a_message():
    ds, clips, frames, waves = _dataset()
    p = widgets.ClipPicker(ds, clips, frames[:1], lambda i: waves[i])  # no frame probabilities for clip 1
    p.picker.value = 1
    (msg,) = p.area.messages
    assert msg.startswith("error: IndexError")


# ----------------------------------------------------------------------------------------------- 03
def test_similar_classes_lists_the_picked_class_first():
    sim = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1], [0.9, 0.1, 1.0]])
    p = widgets.SimilarClasses(["b", "a", "c"], sim, top=2)
    assert p.picker.value == "a" and p.rows == [("a", 1.0), ("b", 0.2)]
    p.picker.value = "c"
    assert p.rows == [("c", 1.0), ("b", 0.9)]
    (table,) = p.area.shown
    assert isinstance(table, HTML) and "<b>c</b>" in table.data and "0.900" in table.data
    p.show("zzz")
    assert p.area.messages == ["error: unknown class 'zzz'"]
    with pytest.raises(ValueError, match="similarity"):
        widgets.SimilarClasses(["a"], sim)


# ----------------------------------------------------------------------------------------------- 06
def test_class_filter_redraws_for_benchmark_and_text():
    row = lambda v: {"sdri_avg": v, "sdri_oracle": v + 1, "irm_sdri": 9.0, "trivial_sdri": 3.0}  # noqa: E731
    per = {"starter-pairs": {"Bass drum": row(1.0), "Snare drum": row(2.0), "Piano": row(0.5)},
           "esc50-pairs": {"Dog": row(4.0)}, "empty": {}}
    p = widgets.ClassFilter(per)
    assert list(p.benchmark.options) == ["starter-pairs", "esc50-pairs"]
    assert p.chosen == ["Bass drum", "Piano", "Snare drum"] and _kinds(p.area) == ["Figure", "DataFrame"]
    p.filter.value = "DRUM"
    assert p.chosen == ["Bass drum", "Snare drum"]
    fig, table = p.area.shown
    assert isinstance(fig, Figure) and "2 of 3 classes" in fig.axes[0].get_title()
    assert list(table.index) == ["Bass drum", "Snare drum"]
    p.benchmark.value = "esc50-pairs"
    assert p.chosen == [] and p.area.messages == ["warning: no class of esc50-pairs matches 'DRUM'"]
    p.filter.value = ""
    assert p.chosen == ["Dog"]
    assert widgets.ClassFilter({}).area.messages == ["warning: no benchmark with per-class results in this run"]
