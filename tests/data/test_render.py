"""Rendering shared by the starter recipe and the starter-music test set (ussnb.data.render)."""
from __future__ import annotations

from collections import defaultdict

from ussnb.data import render


def test_clean_notes_leaves_no_same_pitch_overlap_or_touch():
    notes = [(0.0, 1.0, 60), (0.5, 1.5, 60), (1.5, 2.0, 60), (1.5, 2.0, 64), (2.0, 2.004, 64)]
    cleaned = render.clean_notes(notes)
    by_pitch = defaultdict(list)
    for s, e, p in cleaned:
        assert e - s >= 0.01
        by_pitch[p].append((s, e))
    for runs in by_pitch.values():
        runs.sort()
        for (s0, e0), (s1, e1) in zip(runs, runs[1:]):
            assert s1 - e0 >= 0.01 - 1e-9
