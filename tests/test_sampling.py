"""Frame selection: uniform clips, padding policies, sliding windows (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastvid import sampling


def test_uniform_indices_unchanged():
    assert sampling.uniform_indices(10, 5) == [1, 3, 5, 7, 9]
    assert sampling.uniform_indices(5, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        sampling.uniform_indices(3, 5)


def test_clip_indices_pads_by_policy():
    assert sampling.clip_indices(40, 4) == sampling.uniform_indices(40, 4)
    assert sampling.clip_indices(3, 5, "repeat_last") == [0, 1, 2, 2, 2]
    assert sampling.clip_indices(3, 7, "loop") == [0, 1, 2, 0, 1, 2, 0]
    for policy in ("skip", "raise"):
        with pytest.raises(ValueError):
            sampling.clip_indices(3, 5, policy)


def test_pad_indices():
    assert sampling.pad_indices([0, 4, 8], 5, "repeat_last") == [0, 4, 4]
    assert sampling.pad_indices([0, 4, 8], 5, "loop") == [0, 4, 3]
    assert sampling.pad_indices([0, 4], 5, "raise") == [0, 4]
    with pytest.raises(ValueError):
        sampling.pad_indices([0, 8], 5, "skip")
    with pytest.raises(ValueError):
        sampling.pad_indices([0], 0, "loop")


def test_policy_names():
    for policy in sampling.SHORT_VIDEO_POLICIES:
        assert sampling.check_short_video_policy(policy) == policy
    with pytest.raises(ValueError, match="short_video"):
        sampling.check_short_video_policy("pad")


def test_sliding_windows_as_documented_by_the_seed():
    """60 frames, 6 wanted: [0, 5, ..., 25], then [1, 6, ..., 26], and so on."""
    span = sampling.window_span(6, 60)
    windows = sampling.sliding_windows(60, 6, span)
    assert windows[0] == [0, 5, 10, 15, 20, 25]
    assert windows[1] == [1, 6, 11, 16, 21, 26]
    assert windows[-1][-1] == 59
    assert len(windows) == sampling.window_count(60, span) == 35
    assert len({tuple(w) for w in windows}) == len(windows)  # every window differs


def test_window_span_with_sequence_time():
    assert sampling.window_span(5, 100, fps=25, sequence_time=1.0) == 25
    assert sampling.window_span(5, 100, fps=25, sequence_time=0.5) == 13  # 12.5 rounds up
    assert sampling.window_span(5, 100, fps=30, sequence_time=2) == 60
    assert sampling.window_span(8, 100, fps=25, sequence_time=0.1) == 8  # never below count
    with pytest.raises(ValueError):
        sampling.window_span(5, 100, fps=0, sequence_time=1)
    with pytest.raises(ValueError):
        sampling.window_span(5, 100, fps=25, sequence_time=0)


def test_window_indices_spread_over_the_span():
    assert sampling.window_indices(0, 25, 5) == [0, 6, 12, 18, 24]
    assert sampling.window_indices(10, 5, 5) == [10, 11, 12, 13, 14]
    assert sampling.window_indices(3, 9, 1) == [7]
    with pytest.raises(ValueError):
        sampling.window_indices(0, 0, 3)


def test_window_count_and_stride():
    assert sampling.window_count(10, 11) == 0
    assert sampling.window_count(10, 10) == 1
    assert sampling.window_count(10, 4, stride=3) == 3
    assert [w[0] for w in sampling.sliding_windows(10, 2, 4, stride=3)] == [0, 3, 6]


def test_random_window_is_reproducible():
    a = sampling.random_window(100, 4, 20, rng=3)
    assert a == sampling.random_window(100, 4, 20, rng=3)
    assert a[-1] - a[0] == 19 and 0 <= a[0] and a[-1] < 100
    with pytest.raises(ValueError):
        sampling.random_window(10, 4, 20)


def test_round_half_up():
    assert [sampling.round_half_up(v) for v in (12.5, 12.49, 0.5, 2.0)] == [13, 12, 1, 2]


@given(
    num_frames=st.integers(1, 400),
    count=st.integers(1, 24),
    seconds=st.one_of(st.none(), st.floats(0.05, 10)),
)
def test_windows_stay_inside_and_keep_their_shape(num_frames, count, seconds):
    span = sampling.window_span(count, num_frames, fps=25.0, sequence_time=seconds)
    assert span >= count
    windows = sampling.sliding_windows(num_frames, count, span)
    assert len(windows) == sampling.window_count(num_frames, span)
    for start, window in enumerate(windows):
        assert len(window) == count
        if count > 1:
            assert window[0] == start and window[-1] == start + span - 1
        assert all(a < b for a, b in zip(window, window[1:], strict=False))
        assert window[-1] < num_frames
