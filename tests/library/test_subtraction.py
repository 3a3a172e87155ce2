"""THOR's subtraction arithmetic (``joulefarm.subtraction``)."""

from __future__ import annotations

import math

import pytest

from joulefarm.subtraction import additivity, agreement, differences


def test_differences_are_the_steps_of_consecutive_prefixes() -> None:
    out = differences([2.0, 5.0, 4.5, 10.0])
    assert [d.layer for d in out] == [0, 1, 2, 3]
    assert [d.value for d in out] == [2.0, 3.0, -0.5, 5.5]  # E(0) = 0; a difference may be < 0
    assert sum(d.value for d in out) == pytest.approx(10.0)  # they add up to E(n)
    assert all(d.sigma is None for d in out)


def test_uncertainties_add_in_quadrature() -> None:
    out = differences([2.0, 5.0, 9.0], [0.3, 0.4, 0.0])
    assert [d.sigma for d in out] == pytest.approx([0.3, 0.5, 0.4])
    with pytest.raises(ValueError, match="2 uncertainties for 3 steps"):
        differences([1.0, 2.0, 3.0], [0.1, 0.1])


def test_agreement_weighs_layers_by_their_share_of_the_step() -> None:
    a = agreement([1.05, 5.0, 0.5, 1.0], [1.0, 6.0, 0.0, 2.0], tolerance=0.1, total=10.0)
    assert a.relative[0] == pytest.approx(0.05) and a.relative[1] == pytest.approx(-1 / 6)
    assert math.isnan(a.relative[2]) and a.relative[3] == pytest.approx(-0.5)
    assert a.median_abs_relative == pytest.approx(1 / 6)
    assert a.within == pytest.approx(0.1)  # only layer 0 (1 of the step's 10) is within 10%
    assert a.shares == pytest.approx((0.1, 0.6, 0.0, 0.2))
    assert a.large(0.2) == (1, 3)
    assert agreement([1.0], [2.0]).total == 2.0  # without a step: the reference's sum


def test_agreement_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="2 values for 1"):
        agreement([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="tolerance"):
        agreement([1.0], [1.0], tolerance=-0.1)


def test_additivity() -> None:
    assert additivity([1.0, 2.0], 4.0) == 0.75
    assert math.isnan(additivity([1.0], 0.0))
