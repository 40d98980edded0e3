"""The tempo-map solver: hits on downbeats, tempo inside its bounds, ramps instead of jumps, odd bars, refusals."""

import pytest

from generation.composer import ComposerError
from generation.composer.tempo import MAX_TEMPO_DEVIATION, MAX_TEMPO_STEP, solve_grid


def _downbeats(grid):
    return [grid.seconds(bar.start_tick) for bar in grid.bars]


def _assert_musical(grid, base):
    tempos = [60e6 / tempo for _, tempo in grid.tempo_events]
    assert all(abs(t / base - 1) <= MAX_TEMPO_DEVIATION for t in tempos)
    steps = [abs(b - a) for a, b in zip(tempos, tempos[1:], strict=False)]
    assert all(step <= MAX_TEMPO_STEP * base * 1.001 for step in steps)
    # Events are at least a quarter note apart, so the step bound is a per-beat bound.
    ticks = [tick for tick, _ in grid.tempo_events]
    assert all(b - a >= 240 for a, b in zip(ticks, ticks[1:], strict=False))


def test_without_hits_the_tempo_is_steady_and_the_cue_ends_on_time():
    grid = solve_grid(tempo_bpm=100, meter=(4, 4), duration_seconds=60)

    assert len(grid.tempo_events) == 1
    assert grid.seconds(grid.end_tick) == pytest.approx(60, abs=0.001)


@pytest.mark.parametrize(
    ("tempo", "meter", "hits"),
    [
        (100, (4, 4), [10.3, 17.77, 31.0, 45.5]),
        (137, (6, 8), [3.3, 7.1, 22.22, 50.5]),
        (72, (3, 4), [2.0, 4.0, 6.5, 30.0]),
        (300, (4, 4), [2.0, 4.01, 6.05, 8.2]),
        (30, (7, 8), [2.3, 4.6, 6.9, 20.0]),
    ],
)
def test_every_hit_lands_on_a_downbeat_within_a_millisecond(tempo, meter, hits):
    grid = solve_grid(tempo_bpm=tempo, meter=meter, duration_seconds=58, hit_times=hits)

    downbeats = _downbeats(grid)
    for hit in hits:
        assert min(abs(d - hit) for d in downbeats) <= 0.001
    _assert_musical(grid, tempo)
    assert grid.seconds(grid.end_tick) == pytest.approx(58, abs=0.001)


def test_tempo_ramps_across_a_hit_instead_of_jumping():
    # Given hits that need the tempo pushed one way, then the other
    grid = solve_grid(tempo_bpm=100, meter=(4, 4), duration_seconds=40, hit_times=[9.0, 18.8])

    for hit_bar in grid.hit_bars:
        tick = grid.bars[hit_bar].start_tick
        before, after = grid.bpm_at(tick - 1), grid.bpm_at(tick)
        assert abs(after - before) <= MAX_TEMPO_STEP * 100 * 1.001
    assert len(grid.tempo_events) > 2


def test_an_odd_bar_is_inserted_when_whole_bars_cannot_fit():
    # Given hits 2.5 s apart at 40 bpm in 4/4, where a bar lasts 6 s
    grid = solve_grid(tempo_bpm=40, meter=(4, 4), duration_seconds=30, hit_times=[6.0, 8.5])

    meters = grid.meter_changes()
    assert any((num, den) != (4, 4) for _, num, den in meters)
    assert min(abs(d - 8.5) for d in _downbeats(grid)) <= 0.001
    _assert_musical(grid, 40)


def test_a_hit_that_no_bar_can_reach_is_refused_by_name():
    with pytest.raises(ComposerError) as error:
        solve_grid(tempo_bpm=30, meter=(4, 4), duration_seconds=20, hit_times=[0.3], hit_names=["00:00:00:07"])

    assert error.value.code == "hit_unreachable"
    assert "00:00:00:07" in error.value.detail


def test_a_hit_at_the_end_lands_on_the_closing_bar_line():
    grid = solve_grid(tempo_bpm=90, meter=(4, 4), duration_seconds=30, hit_times=[12.0, 30.0])

    assert grid.hit_bars[-1] == len(grid.bars)
    assert grid.seconds(grid.end_tick) == pytest.approx(30, abs=0.001)
    assert sum(bar.ticks for bar in grid.bars) == grid.end_tick


def test_a_long_slow_cue_with_many_hits_solves_quickly():
    hits = [2.0 * i for i in range(1, 600)]
    grid = solve_grid(tempo_bpm=30, meter=(7, 8), duration_seconds=1200, hit_times=hits)

    downbeats = _downbeats(grid)
    assert all(abs(downbeats[bar] - hit) <= 0.001 for bar, hit in zip(grid.hit_bars, hits, strict=True))
    _assert_musical(grid, 30)
