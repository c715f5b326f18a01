import numpy as np
import pytest
import torch

from unlearnable.clip.metrics import chance_i2t, ranks_i2t, ranks_t2i, retrieval_metrics


def test_ranks_hand_computed_one_caption_per_image():
    # 3 images x 3 texts; text j belongs to image j
    sim = torch.tensor([[0.9, 0.1, 0.5],
                        [0.8, 0.7, 0.0],
                        [0.2, 0.6, 0.1]])
    t2i = torch.tensor([0, 1, 2])
    # i2t: image0 best=0.9 (rank 1); image1 own=0.7, 0.8 higher -> rank 2; image2 own=0.1, 0.2 and 0.6 higher -> 3
    assert ranks_i2t(sim, t2i).tolist() == [1, 2, 3]
    # t2i: text0 column [0.9,0.8,0.2] own 0.9 -> 1; text1 [0.1,0.7,0.6] -> 1; text2 [0.5,0.0,0.1] own 0.1 -> 2
    assert ranks_t2i(sim, t2i).tolist() == [1, 1, 2]


def test_several_captions_per_image_uses_best_caption():
    # 2 images, 4 texts: texts 0,1 -> image 0; texts 2,3 -> image 1
    sim = torch.tensor([[0.1, 0.8, 0.9, 0.2],
                        [0.3, 0.4, 0.5, 0.6]])
    t2i = torch.tensor([0, 0, 1, 1])
    # image0: best correct 0.8; wrong >= 0.8: text2 (0.9) -> rank 2
    # image1: best correct 0.6; wrong >= 0.6: none -> rank 1
    assert ranks_i2t(sim, t2i).tolist() == [2, 1]
    # text0: [0.1, 0.3] own image0 0.1 -> rank 2; text1 -> 1; text2: [0.9,0.5] own 0.5 -> 2; text3 -> 1
    assert ranks_t2i(sim, t2i).tolist() == [2, 1, 2, 1]
    m = retrieval_metrics(sim, t2i)
    assert m["i2t_r1"] == pytest.approx(50.0)
    assert m["t2i_r1"] == pytest.approx(50.0)
    assert m["i2t_r5"] == 100.0 and m["t2i_medr"] == 1.5


def test_ties_count_against_the_model():
    sim = torch.zeros(4, 4)  # a collapsed model: every score equal
    t2i = torch.arange(4)
    assert ranks_i2t(sim, t2i).tolist() == [4, 4, 4, 4]
    assert ranks_t2i(sim, t2i).tolist() == [4, 4, 4, 4]
    m = retrieval_metrics(sim, t2i)
    assert m["t2i_r1"] == 0.0 and m["i2t_r1"] == 0.0


def test_chance_levels():
    # one caption per image among n texts: chance R@k = k/n
    assert chance_i2t(np.ones(100), 100, 5) == pytest.approx(5.0)
    # 5 captions per image among 10 texts, k=1: 50%
    assert chance_i2t(np.full(2, 5), 10, 1) == pytest.approx(50.0)
    m = retrieval_metrics(torch.randn(50, 250), torch.arange(250) // 5)
    assert m["chance_t2i_r1"] == pytest.approx(2.0)
    assert m["chance_i2t_r1"] == pytest.approx(2.0)  # 5 of 250 texts
    assert 0 < m["chance_i2t_r10"] < 20


def test_chunking_matches_unchunked():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(37, 111, generator=g)
    t2i = torch.randint(0, 37, (111,), generator=g)
    t2i[:37] = torch.arange(37)
    assert torch.equal(ranks_i2t(sim, t2i, chunk=5), ranks_i2t(sim, t2i))
    assert torch.equal(ranks_t2i(sim, t2i, chunk=7), ranks_t2i(sim, t2i))


def test_random_scores_near_chance():
    g = torch.Generator().manual_seed(1)
    sim = torch.rand(400, 2000, generator=g)
    m = retrieval_metrics(sim, torch.arange(2000) // 5)
    assert abs(m["t2i_r10"] - m["chance_t2i_r10"]) < 1.5
    assert abs(m["i2t_r10"] - m["chance_i2t_r10"]) < 5
