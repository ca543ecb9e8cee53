"""Outdoor temperature profiles: daily cycle, fronts, season means, determinism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from sim.weather import (
    BEIJING_MONTHLY_MEANS_C,
    ConstantProfile,
    SeasonProfile,
    SyntheticProfile,
    daily_shape,
    heating_season,
)

BEIJING = timezone(timedelta(hours=8))


def _sample(
    profile: SyntheticProfile | SeasonProfile, start: datetime, end: datetime, step_s: float = 600.0
) -> np.ndarray:
    return np.array([profile(t) for t in np.arange(start.timestamp(), end.timestamp(), step_s)])


def test_constant_profile() -> None:
    profile = ConstantProfile(-7.6)
    assert profile(0.0) == profile(1.8e9) == -7.6


def test_daily_shape_extremes_and_zero_mean() -> None:
    hours = np.arange(0.0, 24.0, 0.01)
    shape = np.array([daily_shape(h) for h in hours])
    assert hours[np.argmin(shape)] == pytest.approx(5.0, abs=0.02)
    assert hours[np.argmax(shape)] == pytest.approx(14.0, abs=0.02)
    assert shape.min() == pytest.approx(-1.0) and shape.max() == pytest.approx(1.0)
    assert abs(shape.mean()) < 1e-3
    assert np.max(np.abs(np.diff(shape))) < 0.01  # continuous, no jump at midnight


def test_daily_cycle_in_local_time() -> None:
    profile = SyntheticProfile(mean_c=-3.0, daily_amplitude_k=5.0, front_std_k=0.0)
    day = datetime(2026, 1, 10, tzinfo=BEIJING)
    temps = _sample(profile, day, day + timedelta(days=1), 60.0)
    assert np.argmin(temps) * 60.0 / 3600.0 == pytest.approx(5.0, abs=0.05)
    assert np.argmax(temps) * 60.0 / 3600.0 == pytest.approx(14.0, abs=0.05)
    assert temps.min() == pytest.approx(-8.0, abs=0.01)
    assert temps.max() == pytest.approx(2.0, abs=0.01)
    assert temps.mean() == pytest.approx(-3.0, abs=0.01)


def test_fronts_swing_over_days_and_are_seeded() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a = SyntheticProfile(mean_c=0.0, daily_amplitude_k=0.0, front_std_k=3.0, seed=1)
    b = SyntheticProfile(mean_c=0.0, daily_amplitude_k=0.0, front_std_k=3.0, seed=1)
    c = SyntheticProfile(mean_c=0.0, daily_amplitude_k=0.0, front_std_k=3.0, seed=2)
    year = _sample(a, start, start + timedelta(days=365), 3600.0)
    assert np.array_equal(year, _sample(b, start, start + timedelta(days=365), 3600.0))
    assert not np.allclose(year, _sample(c, start, start + timedelta(days=365), 3600.0))
    assert year.std() == pytest.approx(3.0, rel=0.15)
    daily_means = year[: 360 * 24].reshape(360, 24).mean(axis=1)
    assert daily_means.max() - daily_means.min() > 10.0  # cold waves and warm spells
    assert np.max(np.abs(np.diff(daily_means))) < 10.0  # a cold wave (8 K in 24 h), not a jump


@pytest.mark.parametrize(("year", "month"), [(2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3)])
def test_season_monthly_means(year: int, month: int) -> None:
    profile = SeasonProfile(seed=4)
    start = datetime(year, month, 1, tzinfo=BEIJING)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=BEIJING)
    assert _sample(profile, start, end).mean() == pytest.approx(BEIJING_MONTHLY_MEANS_C[month - 1], abs=1.0)


def test_season_curve_is_smooth_and_passes_the_mid_month_means() -> None:
    profile = SeasonProfile()
    jan_15 = datetime(2026, 1, 16, tzinfo=BEIJING).timestamp()
    assert profile.seasonal_mean_c(jan_15) == pytest.approx(-4.0, abs=0.15)
    days = np.arange(
        datetime(2025, 11, 1, tzinfo=BEIJING).timestamp(), datetime(2026, 4, 1, tzinfo=BEIJING).timestamp(), 86400.0
    )
    curve = np.array([profile.seasonal_mean_c(t) for t in days])
    assert np.max(np.abs(np.diff(curve))) < 0.4  # K per day: no kinks or jumps between months


def test_heating_season_dates() -> None:
    start, end = heating_season(2025)
    assert (start.month, start.day, end.year, end.month, end.day) == (11, 15, 2026, 3, 15)
    assert start.utcoffset() == timedelta(hours=8)
    assert (end - start).days == 120
