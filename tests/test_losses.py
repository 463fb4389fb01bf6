"""Losses against their definitions on small hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reid.losses import CenterLoss, CrossEntropyLabelSmooth, LossTerms, ReidLoss, TripletLoss
from reid.models import ReidOutput


def points_on_a_line(xs: list[float]) -> torch.Tensor:
    """(B, 2) features (x, 0), so distances are |x_i - x_j|."""
    return torch.tensor([[x, 0.0] for x in xs])


def brute_force_triplet(feat: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss written as the loop over anchors of Hermans et al. 2017."""
    terms = []
    for i in range(len(labels)):
        d = (feat - feat[i]).norm(dim=1)
        pos = [d[j] for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        neg = [d[j] for j in range(len(labels)) if labels[j] != labels[i]]
        terms.append(torch.relu(max(pos) - min(neg) + margin))
    return torch.stack(terms).mean()


# --- triplet -------------------------------------------------------------------------------


def test_triplet_hand_computed_unequal_k() -> None:
    # labels 0,0,0 at x = 0, 1, 5 and 1,1 at x = 2, 6 (K = 3 and K = 2).
    # anchor 0: ap 5, an 2 -> 3.3; 1: ap 4, an 1 -> 3.3; 2: ap 5, an 1 -> 4.3;
    # 3: ap 4, an 1 -> 3.3; 4: ap 4, an 1 -> 3.3.  mean = 17.5 / 5 = 3.5
    feat = points_on_a_line([0, 1, 5, 2, 6])
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert TripletLoss(margin=0.3)(feat, labels).item() == pytest.approx(3.5, abs=1e-5)


def test_triplet_hand_computed_with_inactive_anchors() -> None:
    # x = 0, 1 (id 0) and 3, 10 (id 1): only anchor 2 violates the margin: 7 - 2 + 0.3 = 5.3
    feat = points_on_a_line([0, 1, 3, 10])
    labels = torch.tensor([0, 0, 1, 1])
    assert TripletLoss(margin=0.3)(feat, labels).item() == pytest.approx(5.3 / 4, abs=1e-5)
    # well separated identities: every anchor is inactive
    far = points_on_a_line([0, 1, 30, 31])
    assert TripletLoss(margin=0.3)(far, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_triplet_matches_brute_force_on_random_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(12, 7, generator=gen)
    labels = torch.tensor([3, 3, 3, 9, 9, 1, 1, 1, 1, 4, 4, 4])
    expected = brute_force_triplet(feat, labels, margin=0.5)
    assert TripletLoss(margin=0.5)(feat, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_triplet_gradient_finite_with_duplicate_images() -> None:
    # An identity with fewer than K images is sampled with replacement: identical features,
    # here the hardest positive of active anchors 0 and 1 (distance 0, negative at 0.1).
    feat = points_on_a_line([1, 1, 1.1, 3]).requires_grad_(True)
    loss = TripletLoss(margin=0.3)(feat, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() > 0
    assert torch.isfinite(feat.grad).all()


def test_triplet_refuses_anchor_without_positive() -> None:
    feat = points_on_a_line([0, 1, 2])
    with pytest.raises(ValueError, match="1 of 3 anchors have no other image"):
        TripletLoss()(feat, torch.tensor([0, 0, 1]))


def test_triplet_refuses_batch_without_negative() -> None:
    with pytest.raises(ValueError, match="no negative"):
        TripletLoss()(points_on_a_line([0, 1]), torch.tensor([5, 5]))


# --- cross entropy with label smoothing ------------------------------------------------------


def test_label_smoothing_matches_manual_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, generator=gen)
    targets = torch.tensor([2, 0, 3])
    eps, num_classes = 0.1, 4
    q = torch.full((3, 4), eps / num_classes)
    q[torch.arange(3), targets] += 1 - eps
    expected = (-(q * logits.log_softmax(dim=1)).sum(dim=1)).mean()
    loss = CrossEntropyLabelSmooth(num_classes, eps)(logits, targets)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_hand_cases() -> None:
    # uniform logits: every smoothed target gives log C
    loss = CrossEntropyLabelSmooth(5, 0.3)(torch.zeros(2, 5), torch.tensor([1, 4]))
    assert loss.item() == pytest.approx(math.log(5), rel=1e-6)
    # epsilon 0 is the plain cross entropy
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    plain = -torch.log_softmax(logits, dim=1)[0, 0]
    assert CrossEntropyLabelSmooth(3, 0.0)(logits, torch.tensor([0])).item() == pytest.approx(
        plain.item()
    )


def test_label_smoothing_checks_number_of_classes() -> None:
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        CrossEntropyLabelSmooth(4)(torch.zeros(2, 3), torch.tensor([0, 1]))


# --- centre loss -----------------------------------------------------------------------------


def make_center_loss() -> CenterLoss:
    loss = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    return loss


def test_center_loss_hand_computed() -> None:
    # squared distances to the own centre: 1, 4, 0 -> (5 + 1e-12) / 3
    feat = torch.tensor([[1.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
    loss = make_center_loss()(feat, torch.tensor([0, 1, 0]))
    assert loss.item() == pytest.approx(5.0 / 3.0, rel=1e-6)


def test_center_loss_gradient_reaches_centres() -> None:
    # d/dc_y sum_i ||x_i - c_{y_i}||^2 / B = -2 sum_{i: y_i = y} (x_i - c_y) / B
    center = make_center_loss()
    feat = torch.tensor([[1.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
    center(feat, torch.tensor([0, 1, 0])).backward()
    expected = torch.tensor([[-2.0 / 3.0, 0.0], [0.0, -4.0 / 3.0]])
    torch.testing.assert_close(center.centers.grad, expected)


# --- combined loss ---------------------------------------------------------------------------


def make_output(batch: int = 6, dim: int = 4, classes: int = 3) -> ReidOutput:
    gen = torch.Generator().manual_seed(2)
    feat = torch.randn(batch, dim, generator=gen, requires_grad=True)
    bn_feat = F.batch_norm(feat, None, None, training=True)
    logits = torch.randn(batch, classes, generator=gen, requires_grad=True)
    return ReidOutput(feat=feat, bn_feat=bn_feat, logits=logits)


def test_reid_loss_total_is_the_weighted_sum() -> None:
    output = make_output()
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = ReidLoss(
        3, 4, epsilon=0.2, margin=0.4, center_weight=0.01, ce_weight=0.7, triplet_weight=1.5
    )
    terms = loss(output, targets)
    assert isinstance(terms, LossTerms)
    ce = CrossEntropyLabelSmooth(3, 0.2)(output.logits, targets)
    triplet = TripletLoss(0.4)(output.feat, targets)
    center = ((output.feat - loss.center.centers[targets]) ** 2).sum() / 6
    torch.testing.assert_close(terms.ce, ce)
    torch.testing.assert_close(terms.triplet, triplet)
    torch.testing.assert_close(terms.center, center)
    torch.testing.assert_close(terms.total, 0.7 * ce + 1.5 * triplet + 0.01 * center)
    assert all(t.ndim == 0 for t in terms)


def test_reid_loss_gradients_reach_centres_and_model_outputs() -> None:
    output = make_output()
    loss = ReidLoss(3, 4, center_weight=0.5)
    loss(output, torch.tensor([0, 0, 1, 1, 2, 2])).total.backward()
    assert loss.center.centers.grad is not None
    assert loss.center.centers.grad.abs().sum() > 0
    assert output.feat.grad.abs().sum() > 0 and output.logits.grad.abs().sum() > 0


def test_reid_loss_skips_terms_with_zero_weight() -> None:
    # softmax-only: a batch without positives is fine when the triplet weight is 0
    output = make_output(batch=3)
    terms = ReidLoss(3, 4, triplet_weight=0.0, center_weight=0.0)(output, torch.tensor([0, 1, 2]))
    assert terms.triplet.item() == 0.0 and terms.center.item() == 0.0
    torch.testing.assert_close(terms.total, terms.ce)
    with pytest.raises(ValueError, match="anchors have no other image"):
        ReidLoss(3, 4)(output, torch.tensor([0, 1, 2]))
