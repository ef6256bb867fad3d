"""Continual-learning measures on hand-computed matrices: a wrong sign or index must fail one of these."""

import math

import pytest

from memstream.bench.continual import continual_metrics

# rows: after stage i; columns: domain j. Asymmetric on purpose, so a transposed index changes every number.
R = [[1.0, 6.0, 7.0, 9.0],
     [2.0, 2.5, 6.5, 8.0],
     [1.5, 4.0, 3.0, 7.5],
     [3.0, 3.5, 5.0, 4.0]]
INITIAL = [2.0, 6.5, 8.0, 9.5]


def test_final_loss_is_the_mean_of_the_last_row():
    assert continual_metrics(R).final_loss == pytest.approx((3.0 + 3.5 + 5.0 + 4.0) / 4)


def test_backward_transfer_is_negative_when_loss_rose_after_learning():
    # (R00 - R30) + (R11 - R31) + (R22 - R32) over 3 = (1-3) + (2.5-3.5) + (3-5) = -5 / 3
    assert continual_metrics(R).bwt == pytest.approx(-5 / 3)


def test_forward_transfer_compares_the_stage_before_with_the_initial_model():
    # (b1 - R01) + (b2 - R12) + (b3 - R23) over 3 = (6.5-6) + (8-6.5) + (9.5-7.5) = 4 / 3
    assert continual_metrics(R, INITIAL).fwt == pytest.approx(4 / 3)
    assert continual_metrics(R).fwt is None


def test_forgetting_is_final_minus_best_since_learned():
    m = continual_metrics(R)
    # domain 0: 3 - min(1, 2, 1.5) = 2; domain 1: 3.5 - min(2.5, 4) = 1; domain 2: 5 - 3 = 2
    assert m.forgetting_per_domain == pytest.approx([2.0, 1.0, 2.0])
    assert m.forgetting == pytest.approx(5 / 3)


def test_forgetting_only_looks_at_stages_since_the_domain_was_learned():
    # domain 1 had a low loss 0.5 *before* its stage: that is not something it could forget
    early = [[1.0, 0.5], [2.0, 1.0]]
    assert continual_metrics(early).forgetting_per_domain == [1.0]


def test_plasticity_is_what_each_stage_gained_on_its_own_domain():
    m = continual_metrics(R, INITIAL)
    # stage 0: b0 - R00 = 1; stage 1: R01 - R11 = 3.5; stage 2: R12 - R22 = 3.5; stage 3: R23 - R33 = 3.5
    assert m.plasticity_per_domain == pytest.approx([1.0, 3.5, 3.5, 3.5])
    assert m.plasticity == pytest.approx(11.5 / 4)
    assert continual_metrics(R).plasticity_per_domain == pytest.approx([3.5, 3.5, 3.5])


def test_a_model_that_never_forgets_scores_zero_forgetting_and_bwt():
    flat = [[1.0, 5.0], [1.0, 2.0]]
    m = continual_metrics(flat)
    assert m.forgetting == 0 and m.bwt == 0 and m.plasticity == 3.0


@pytest.mark.parametrize("bad", [[[1.0]], [[1.0, 2.0], [3.0]], []])
def test_a_matrix_that_is_not_square_is_refused(bad):
    with pytest.raises(ValueError, match="square"):
        continual_metrics(bad)


def test_initial_must_match_the_domains():
    with pytest.raises(ValueError, match="one loss per domain"):
        continual_metrics(R, [1.0])


def test_metrics_are_json_ready():
    data = continual_metrics(R, INITIAL).to_dict()
    assert set(data) >= {"final_loss", "bwt", "fwt", "forgetting", "plasticity"}
    assert all(math.isfinite(v) for v in (data["bwt"], data["fwt"]))
