import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO

from unlearnable.clip.encoders import Encoder
from unlearnable.clip.models import ModelSpec, create_model, tokenizer
from unlearnable.clip.text import EOT, SOT, insert_trigger, published_caption, tokenize, trigger_vocabulary
from unlearnable.data import manifest as mf
from unlearnable.data.image_store import open_image_store
from unlearnable.data.rowfile import RowFile
from unlearnable.protect.config import ProtectConfig, method_config
from unlearnable.protect.engine import ProtectData, Protector
from unlearnable.protect.export import export_published, protected_pixels
from unlearnable.protect.hotflip import hotflip
from unlearnable.protect.loss import clip_loss
from unlearnable.protect.pgd import error_minimizing_pgd
from unlearnable.protect.run import protect
from unlearnable.protect.units import Units

TOK = tokenizer("tiny-vit")


@pytest.fixture(scope="module")
def dataset(shapes_store):
    df, store = shapes_store
    return df[df.split == "train"].reset_index(drop=True), store


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model(ModelSpec("tiny-vit")).eval()


def test_pgd_stays_in_budget_and_range_on_the_integer_grid():
    model = _model()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 32), generator=g).float()
    x[:, :, :4] = 0
    x[:, :, -4:] = 255  # saturated pixels: the range clamp must bind
    d0 = torch.randint(-8, 9, x.shape, generator=g).float()
    txt = F.normalize(torch.randn(6, 64, generator=g), dim=-1)
    enc = Encoder(model, torch.device("cpu"))
    scale = torch.tensor(20.0)
    for p in model.parameters():
        p.requires_grad_(False)
    d, last = error_minimizing_pgd(enc, x, (x + d0).clamp(0, 255), lambda t: txt, eps=4, step=1, steps=5,
                                   logit_scale=scale)
    assert d.abs().max() <= 4
    assert (x + d).min() >= 0 and (x + d).max() <= 255
    assert torch.equal(d, d.round())

    def loss(delta):
        return float(clip_loss(enc.image(x + delta), txt, scale))

    assert loss(d) < loss((d0.clamp(-4, 4) + x).clamp(0, 255) - x)  # error-minimising: the loss went down
    assert loss(d) <= last + 1e-6  # the reported loss is the last step's, before its update


def test_trigger_vocabulary_has_no_special_tokens_and_round_trips():
    vocab = trigger_vocabulary(TOK)
    assert SOT not in vocab and EOT not in vocab and 0 not in vocab
    g = torch.Generator().manual_seed(0)
    trig = vocab[torch.randint(len(vocab), (200, 5), generator=g)]
    caps = ["a small red circle in the top left"] * 100 + ["big blue square , gray backdrop"] * 100
    published = [published_caption(TOK, t, c) for t, c in zip(trig.tolist(), caps)]
    assert torch.equal(tokenize(TOK, published), insert_trigger(tokenize(TOK, caps), trig))


def test_insert_trigger_keeps_eot_when_truncating():
    toks = tokenize(TOK, ["word " * 40])  # fills the 32-token context
    out = insert_trigger(toks, torch.full((1, 3), 1000))
    assert out[0, 0] == SOT and out[0, 1:4].tolist() == [1000] * 3 and out[0, -1] == EOT


def test_hotflip_lowers_the_loss_and_stays_in_vocabulary():
    model = _model(1)
    for p in model.parameters():
        p.requires_grad_(False)
    vocab = trigger_vocabulary(TOK)
    g = torch.Generator().manual_seed(2)
    caps = tokenize(TOK, [f"caption number {i}" for i in range(16)])
    trig = vocab[torch.randint(len(vocab), (16, 3), generator=g)]
    img = F.normalize(torch.randn(16, 64, generator=g), dim=-1)
    scale = torch.tensor(30.0)
    enc = Encoder(model, torch.device("cpu"))
    new, before, after = hotflip(enc, img, caps, trig, vocab, 8, scale)
    assert after < before
    assert torch.isin(new, vocab).all()
    full_length = F.normalize(model.encode_text(insert_trigger(caps, new)), dim=-1)  # open_clip's own forward
    assert float(clip_loss(img, full_length, scale)) == pytest.approx(float(after), rel=1e-4)
    old = F.normalize(model.encode_text(insert_trigger(caps, trig)), dim=-1)
    assert float(clip_loss(img, old, scale)) == pytest.approx(float(before), rel=1e-4)


def test_noise_rowfile_round_trip(tmp_path):
    f = RowFile.create(tmp_path / "n.npy", (10, 4, 4, 3), np.int8)
    rows = np.random.default_rng(0).integers(-8, 9, (3, 4, 4, 3)).astype(np.int8)
    f.write([7, 2, 9], rows)
    f.close()
    back = RowFile(tmp_path / "n.npy")
    assert np.array_equal(back[[7, 2, 9]], rows)
    assert np.array_equal(np.load(tmp_path / "n.npy")[[2, 7, 9]], rows[[1, 0, 2]])
    assert back[[0]].sum() == 0


def test_image_units_share_noise_and_trigger(dataset):
    train, _ = dataset
    units = Units(train, "image")
    assert len(units) == train["image_id"].nunique()
    per_image = pd.Series(units.unit_of_pair).groupby(train["image_id"]).nunique()
    assert (per_image == 1).all()
    picked = units.pick_pairs(np.arange(len(units)), torch.Generator().manual_seed(0))
    assert np.array_equal(units.unit_of_pair[picked], np.arange(len(units)))


def _protector(dataset, workdir, cfg, seed=0):
    train, store = dataset
    torch.manual_seed(seed)  # the surrogate's initial weights
    data = ProtectData(open_image_store(store), Units(train, cfg.granularity),
                       tokenize(TOK, train["caption"].tolist()), trigger_vocabulary(TOK))
    return Protector(cfg, Encoder(create_model(ModelSpec("tiny-vit")), torch.device("cpu")), data, workdir, seed)


SMALL = ProtectConfig(rounds=3, surrogate_steps=2, hotflip_rounds=2, candidates=4, pgd_steps=2, batch_size=32,
                      granularity="image")


def test_shuffle_pairs_each_image_with_another_images_caption_and_its_own_trigger(dataset, tmp_path):
    """Inside the engine's PGD: row i (image i) is scored against the caption of an image j != i, and that
    text still carries image i's trigger. Captions are made unique, so a text's caption names its pair."""
    train, store = dataset
    train = train.assign(caption=[f"number {i} {c}" for i, c in enumerate(train["caption"])])
    cfg = ProtectConfig(**{**SMALL.__dict__, "rounds": 1, "hotflip_rounds": 0, "pgd_steps": 3})
    pr = _protector((train, store), tmp_path, cfg)
    pr.trainers[0].step = lambda *a: torch.tensor(0.0)  # only the protect pass matters here
    k = cfg.token_num
    length = pr.captions.shape[1]  # a caption shifted right by k loses its last k tokens (and maybe EOT)
    body_of = {tuple(t[1:length - k - 1]): i for i, t in enumerate(pr.captions.tolist())}
    batches, texts = [], []
    pick = pr.units.pick_pairs
    pr.units.pick_pairs = lambda units, gen: batches.append((units.copy(), pick(units, gen))) or batches[-1][1]
    encode_text = pr.encoder.text

    def spy(tokens):
        if not torch.is_grad_enabled():  # PGD's text side runs without autograd
            texts.append((len(batches), tokens.clone()))
        return encode_text(tokens)

    pr.encoder.text = spy
    pr.run()
    assert len(texts) == len(batches) * cfg.pgd_steps  # every PGD step, and nothing else
    foreign = 0
    for b, toks in texts:
        units, pairs = batches[b - 1]
        assert torch.equal(toks[:, 1:1 + k], pr.triggers[torch.as_tensor(units)])  # each row: its own trigger
        bodies = [tuple(row[1 + k:length - 1]) for row in toks.tolist()]
        caption_pair = np.array([body_of[body] for body in bodies])
        assert sorted(caption_pair) == sorted(pairs)  # a permutation of the batch's own captions
        foreign += int((train["image_id"].to_numpy()[caption_pair] != train["image_id"].to_numpy()[pairs]).sum())
    pgd_texts = len(texts)
    assert foreign > 0.5 * pgd_texts * cfg.batch_size * (1 - 1 / cfg.batch_size)


@pytest.mark.parametrize("kind, granularity, block", [("em", "image", 1), ("strong_em", "pair", 8),
                                                       ("em", "cluster", 1)])
def test_unshuffled_pgd_encodes_each_batchs_captions_once(dataset, tmp_path, kind, granularity, block):
    """Without caption shuffling every PGD step of a batch sees the same texts (the surrogate is frozen and the
    captions fixed): they are encoded once per batch, not once per step, and still go with their own images."""
    train, store = dataset
    cfg = method_config({"kind": kind, "granularity": granularity, "clusters": 4 if granularity == "cluster" else 0,
                         "rounds": 1, "surrogate_steps": 1, "pgd_steps": 3, "batch_size": 32, "noise_block": block})
    pr = _protector(dataset, tmp_path, cfg)
    pr.trainers[0].step = lambda *a: torch.tensor(0.0)
    batches, texts = [], []
    for name in ("pick_pairs", "pick_image_pairs"):
        pick = getattr(pr.units, name)
        setattr(pr.units, name, lambda units, gen, pick=pick: batches.append(pick(units, gen)) or batches[-1])
    encode_text = pr.encoder.text
    pr.encoder.text = lambda tokens: texts.append(tokens.clone()) or encode_text(tokens)
    pr.run()
    assert len(batches) > 1 and len(texts) == len(batches)  # one encoding per batch, for all 3 steps
    for pairs, toks in zip(batches, texts):
        assert torch.equal(toks, pr.captions[torch.as_tensor(pairs)])  # the batch's own captions, in order


RESUME_CFG = ProtectConfig(**{**SMALL.__dict__, "batch_size": 8})  # several batches per pass


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    """The protection every killed-and-resumed run below must end at: made once for all of them."""
    full = _protector(dataset, tmp_path_factory.mktemp("uninterrupted"), RESUME_CFG)
    full.run()
    return RowFile(full.noise_path).read_all(), full.triggers.clone(), full.history


@pytest.mark.parametrize("commit_seconds", [0.0, 3600.0])
@pytest.mark.parametrize("dies_at", [3, 4, 6])
def test_resume_after_a_crash_is_bit_identical(dataset, uninterrupted, tmp_path, dies_at, commit_seconds):
    """Killed at any write of a pass (before or after its rows changed in place; markers after every batch or
    only at the pass's start), a resumed protection puts back the rows the undo log holds and ends with the same
    noise, triggers and losses as an uninterrupted one."""
    cfg = RESUME_CFG
    want_noise, want_trig, full_history = uninterrupted

    crashing = _protector(dataset, tmp_path / "b", cfg)
    crashing.commit_seconds = commit_seconds
    calls = {"n": 0}
    write = RowFile.write

    def dying_write(self, idx, rows):
        calls["n"] += 1
        if calls["n"] == dies_at:  # after it wrote: the rows have changed in place
            write(self, idx, rows)
            raise KeyboardInterrupt("simulated kill")
        return write(self, idx, rows)

    RowFile.write = dying_write
    try:
        with pytest.raises(KeyboardInterrupt):
            crashing.run()
    finally:
        RowFile.write = write
    assert crashing.round == 0 and not np.array_equal(RowFile(crashing.noise_path).read_all(), want_noise)
    resumed = _protector(dataset, tmp_path / "b", cfg)
    resumed.run()
    assert np.array_equal(RowFile(resumed.noise_path).read_all(), want_noise)
    assert torch.equal(resumed.triggers, want_trig)
    assert [h["surrogate_loss"] for h in resumed.history] == [h["surrogate_loss"] for h in full_history]
    assert [h["pgd_loss"] for h in resumed.history] == [h["pgd_loss"] for h in full_history]


@pytest.mark.parametrize("granularity", ["pair", "image"])
def test_export_equals_in_memory_inputs(dataset, tmp_path, granularity):
    train, store = dataset
    cfg = ProtectConfig(**{**SMALL.__dict__, "rounds": 1, "granularity": granularity})
    protect(train, store, ModelSpec("tiny-vit"), cfg, 0, "cpu", tmp_path / "prot")
    meta = export_published(train, store, tmp_path / "prot", "both", TOK, tmp_path / "pub")
    assert meta["trigger_roundtrip_rate"] == 1.0
    noise = np.load(tmp_path / "prot" / "noise.npy")
    trig = torch.from_numpy(np.load(tmp_path / "prot" / "triggers.npy"))
    units = Units(train, granularity)
    assert np.abs(noise).max() <= cfg.eps and np.abs(noise).max() > 0
    want_px = protected_pixels(open_image_store(store)[units.pair_image_row], noise[units.unit_of_pair])
    want_tok = insert_trigger(tokenize(TOK, train["caption"].tolist()), trig[units.unit_of_pair])
    pub = mf.read_manifest(tmp_path / "pub" / "manifest.parquet")
    got_px = open_image_store(tmp_path / "pub" / "images.npy")[pub["image_index"].to_numpy()]
    assert np.array_equal(got_px, want_px)
    assert torch.equal(tokenize(TOK, pub["caption"].tolist()), want_tok)
    assert (pub["split"] == "train").all()


def test_em_and_controls(dataset, tmp_path):
    train, store = dataset
    em = method_config({"kind": "em", "rounds": 1, "surrogate_steps": 1, "pgd_steps": 2, "batch_size": 32})
    assert em.trigger_len == 0 and not em.shuffle
    protect(train, store, ModelSpec("tiny-vit"), em, 0, "cpu", tmp_path / "em")
    assert np.load(tmp_path / "em" / "triggers.npy").shape[1] == 0
    rn = method_config({"kind": "random_noise", "eps": 4})
    protect(train, store, ModelSpec("tiny-vit"), rn, 0, "cpu", tmp_path / "rn")
    n = np.load(tmp_path / "rn" / "noise.npy")
    assert n.min() == -4 and n.max() == 4
    rt = method_config({"kind": "random_trigger", "token_num": 2})
    protect(train, store, ModelSpec("tiny-vit"), rt, 0, "cpu", tmp_path / "rt")
    assert np.load(tmp_path / "rt" / "noise.npy").max() == 0
    assert np.isin(np.load(tmp_path / "rt" / "triggers.npy"), trigger_vocabulary(TOK).numpy()).all()


def test_a_surrogate_made_from_a_checkpoint_starts_from_its_weights(dataset, tmp_path):
    """The owner's threat model: noise made against the public CLIP a fine-tuning scraper starts from."""
    from safetensors.torch import save_model

    from unlearnable.clip.models import load_weights, weights_digest

    train, store = dataset
    trained = _model(seed=7)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = tmp_path / "public.safetensors"
    save_model(trained, str(ckpt))
    cfg = method_config({"kind": "em", "rounds": 1, "surrogate_steps": 0, "pgd_steps": 2, "batch_size": 32})
    pre = protect(train, store, ModelSpec("tiny-vit", str(ckpt)), cfg, 0, "cpu", tmp_path / "pre")
    scratch = protect(train, store, ModelSpec("tiny-vit"), cfg, 0, "cpu", tmp_path / "scratch")
    fresh = create_model(ModelSpec("tiny-vit"))
    load_weights(fresh, ckpt)
    assert pre["surrogate_start_sha256"] == weights_digest(fresh) == weights_digest(trained)
    assert scratch["surrogate_start_sha256"] != pre["surrogate_start_sha256"]
    # with no surrogate step, the noise is the starting weights' error-minimising noise: it differs
    assert not np.array_equal(np.load(tmp_path / "pre" / "noise.npy"), np.load(tmp_path / "scratch" / "noise.npy"))


def test_a_protection_rewrites_one_noise_file_in_place_and_never_copies_it(dataset, tmp_path, monkeypatch):
    """Disk: one noise file for the whole protection, its rows rewritten in place round after round; the undo
    log beside it never holds more than an eighth of the noise plus one batch; the finished noise reaches the
    output as a link to the same blocks, not as a copy."""
    from unlearnable.protect.commit import UndoLog

    train, store = dataset
    work = tmp_path / "work"
    created, logged = [], []
    create, append = RowFile.create, UndoLog.append

    def spy_create(path, *a, **kw):
        created.append(Path(path).name)
        return create(path, *a, **kw)

    def spy_append(self, batch, units, old_rows):
        append(self, batch, units, old_rows)
        logged.append((self.bytes, len(self.noise) * self.noise.row_bytes, old_rows.nbytes))

    monkeypatch.setattr(RowFile, "create", staticmethod(spy_create))
    monkeypatch.setattr(UndoLog, "append", spy_append)
    links = []
    link = os.link
    monkeypatch.setattr(os, "link", lambda src, dst: links.append(Path(src).name) or link(src, dst))
    monkeypatch.setattr("shutil.copyfile", lambda *a, **kw: pytest.fail("the noise file was copied"))
    cfg = ProtectConfig(**{**SMALL.__dict__, "rounds": 3, "batch_size": 8})
    protect(train, store, ModelSpec("tiny-vit"), cfg, 0, "cpu", tmp_path / "prot", workdir=work)
    assert created == ["noise.npy"]  # never a second noise file
    units = train["image_id"].nunique()
    assert len(logged) == cfg.rounds * -(-units // 8)  # every batch of every pass logged its rows
    assert all(size <= noise // 8 + batch for size, noise, batch in logged)  # far below a second copy
    assert links == ["noise.npy"]
    assert not work.exists() and os.stat(tmp_path / "prot" / "noise.npy").st_nlink == 1


def test_cluster_units_share_noise_by_caption_similarity(dataset, tmp_path):
    """Cluster granularity: images whose captions share words share one noise; every published image of a
    cluster carries exactly that noise (clamped to the valid range), and the loss goes down."""
    from unlearnable.protect.units import caption_clusters

    train, store = dataset
    labels = caption_clusters(np.array([0, 0, 1, 2, 3]), ["red circle", "a red circle", "red circle top",
                                                          "blue square", "a blue square"], k=2)
    assert labels[0] == labels[1] != labels[2]  # images 0, 1 (red circles) vs 2 (blue square)
    cfg = ProtectConfig(method="em", granularity="cluster", clusters=4, rounds=2, surrogate_steps=2, pgd_steps=3,
                        batch_size=16, token_num=0, shuffle=False)
    meta = protect(train, store, ModelSpec("tiny-vit"), cfg, 0, "cpu", tmp_path / "prot")
    noise = np.load(tmp_path / "prot" / "noise.npy")
    units = pd.read_parquet(tmp_path / "prot" / "units.parquet")
    assert noise.shape[0] == 4 == units["unit"].nunique() and np.abs(noise).max() <= cfg.eps
    assert (units.groupby("image_id")["unit"].nunique() == 1).all()  # one cluster per image
    assert np.abs(noise).reshape(4, -1).max(1).min() > 0  # every cluster's noise was optimised
    assert meta["history"][-1]["pgd_loss"] == meta["history"][-1]["pgd_loss"]  # recorded, not NaN
    export_published(train, store, tmp_path / "prot", "noise", TOK, tmp_path / "pub")
    pub = RowFile(tmp_path / "pub" / "images.npy")
    pub_rows = mf.read_manifest(tmp_path / "pub" / "manifest.parquet")
    clean = RowFile(store)
    unit_of_image = units.drop_duplicates("image_id").set_index("image_id")["unit"]
    image_index = train.drop_duplicates("image_id").set_index("image_id")["image_index"]
    for image_id, row in pub_rows.drop_duplicates("image_id").set_index("image_id")["image_index"].items():
        want = protected_pixels(clean[[image_index[image_id]]][0], noise[unit_of_image[image_id]])
        assert np.array_equal(pub[[row]][0], want)


def _blocks_constant(noise, b):
    h, w = noise.shape[1:3]
    low = noise[:, ::b, ::b]
    return np.array_equal(noise, low.repeat(b, 1).repeat(b, 2)[:, :h, :w])


@pytest.mark.parametrize("kind, granularity", [("em", "image"), ("mem", "pair"), ("em", "cluster")])
def test_low_frequency_noise_is_constant_over_its_squares_and_optimised(dataset, tmp_path, kind, granularity):
    """noise_block 8 on 32 px images: a 4 x 4 grid of squares per channel, moved by PGD, within eps; what is
    stored is what publishing adds (before the range clamp), so every published square is one colour shift."""
    train, store = dataset
    spec = {"kind": kind, "granularity": granularity, "rounds": 2, "surrogate_steps": 2, "pgd_steps": 3,
            "batch_size": 16, "noise_block": 8, "eps": 6}
    if kind == "mem":
        spec.update(token_num=2, hotflip_rounds=1, candidates=2)
    if granularity == "cluster":
        spec["clusters"] = 3
    protect(train, store, ModelSpec("tiny-vit"), method_config(spec), 0, "cpu", tmp_path / "p")
    noise = np.load(tmp_path / "p" / "noise.npy")
    assert _blocks_constant(noise, 8) and not _blocks_constant(noise, 16)  # squares of 8, not of 16
    assert np.abs(noise).max() == 6  # optimised to the budget, which it never leaves
    pixel = method_config({**spec, "noise_block": 1})
    protect(train, store, ModelSpec("tiny-vit"), pixel, 0, "cpu", tmp_path / "px")
    assert not _blocks_constant(np.load(tmp_path / "px" / "noise.npy"), 2)


def test_random_low_frequency_noise_is_the_control_at_the_same_budget(dataset, tmp_path):
    train, store = dataset
    protect(train, store, ModelSpec("tiny-vit"), method_config({"kind": "random_noise", "eps": 16, "noise_block": 4}),
            0, "cpu", tmp_path / "rb")
    noise = np.load(tmp_path / "rb" / "noise.npy")
    assert _blocks_constant(noise, 4) and noise.min() == -16 and noise.max() == 16
    protect(train, store, ModelSpec("tiny-vit"), method_config({"kind": "random_noise", "eps": 16}), 0, "cpu",
            tmp_path / "rp")
    assert not _blocks_constant(np.load(tmp_path / "rp" / "noise.npy"), 2)


def test_low_frequency_noise_survives_the_scraper_images_better_than_pixel_noise():
    """Why the family exists: after 0.5x resize and JPEG 75, far more of a square noise is left than of a
    per-pixel noise of the same budget (energy of what is left, relative to what was added)."""
    from unlearnable.defend.defences import Defence

    scraper = Defence.from_config("s", {"kind": "scraper"})
    rng = np.random.default_rng(0)
    base = np.full((64, 64, 3), 128, dtype=np.int16)
    kept = {}
    for b in (1, 8):
        low = rng.integers(-16, 17, (-(-64 // b), -(-64 // b), 3))
        noise = low.repeat(b, 0).repeat(b, 1)[:64, :64]
        out = scraper.image((base + noise).astype(np.uint8)).astype(np.int16) - scraper.image(
            base.astype(np.uint8)).astype(np.int16)
        kept[b] = float((out * noise).sum() / (noise * noise).sum())
    assert kept[8] > 0.8 and kept[1] < 0.4, kept


def test_eot_views_are_the_defence_forward_and_the_identity_backward():
    """BPDA: the surrogate sees exactly what the defence writes (the defended folder's bytes), and the
    gradient passes through as if the defence were not there."""
    from unlearnable.defend.defences import jpeg
    from unlearnable.protect.eot import ScraperTransforms

    eot = ScraperTransforms(({"kind": "jpeg", "quality": 30},))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 16, 16), generator=g).float().requires_grad_(True)
    y = eot.apply(x, eot.defences[0])
    want = np.stack([jpeg(img, 30) for img in x.detach().to(torch.uint8).permute(0, 2, 3, 1).numpy()])
    assert torch.equal(y.detach().permute(0, 2, 3, 1).to(torch.uint8), torch.from_numpy(want))
    assert not torch.equal(y.detach(), x.detach())  # JPEG q30 changed the pixels
    w = torch.randn(x.shape, generator=g)
    grad, = torch.autograd.grad((y * w).sum(), x)
    assert torch.equal(grad, w)
    assert eot.apply(x, None) is x
    draws = eot.draw(400, torch.Generator().manual_seed(1))
    assert 150 < sum(d is None for d in draws) < 250  # identity and JPEG, equally often
    before = torch.Generator().manual_seed(2)
    ScraperTransforms(()).draw(5, before)
    assert torch.equal(before.get_state(), torch.Generator().manual_seed(2).get_state())  # no EOT: no draws


def test_eot_through_the_scraper_chain_sees_its_images_then_the_victims_crops():
    """A chain in EOT: its image steps forward (BPDA), then the very crops and flips the victim's training
    draws (the same generator stream gives the same boxes), with the gradient following each pixel."""
    from unlearnable.clip.train import random_resized_crop_flip
    from unlearnable.defend.defences import Defence
    from unlearnable.protect.eot import ScraperTransforms

    eot = ScraperTransforms(({"kind": "scraper"},))
    scraper = Defence.from_config("s", {"kind": "scraper"})
    x = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(0)).float().requires_grad_(True)
    y = eot.apply(x, eot.defences[0], torch.Generator().manual_seed(5))
    defended = np.stack([scraper.image(img) for img in x.detach().to(torch.uint8).permute(0, 2, 3, 1).numpy()])
    want = random_resized_crop_flip(torch.from_numpy(defended), torch.Generator().manual_seed(5), 0.5)
    assert (y.detach().permute(0, 2, 3, 1) - want.float()).abs().max() <= 1  # equal up to the victim's rounding
    w = torch.zeros_like(y)
    w[:, :, :, 0] = 1.0  # the left column of what the surrogate sees
    grad, = torch.autograd.grad((y * w).sum(), x)
    assert grad.abs().sum() > 0 and not torch.equal(grad, w)  # it comes from where the crop took those pixels
    with pytest.raises(ValueError, match="generator"):
        eot.apply(x, eot.defences[0])


def test_eot_protection_optimises_through_the_defence(dataset, tmp_path):
    """With EOT, PGD steps and surrogate steps see their batch through a drawn defence (here grayscale, whose
    output has equal channels), the rest through the identity; without it, nothing is transformed."""
    cfg = ProtectConfig(**{**SMALL.__dict__, "method": "em", "token_num": 0, "hotflip_rounds": 0, "shuffle": False,
                           "eot": ({"kind": "grayscale"},)})
    pr = _protector(dataset, tmp_path, cfg)
    seen = {"gray": 0, "colour": 0}
    image = pr.encoder.image

    def spy(x):
        gray = bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())
        seen["gray" if gray else "colour"] += 1
        return image(x)

    pr.encoder.image = spy
    pr.run()
    assert seen["gray"] > 0 and seen["colour"] > 0
    noise = RowFile(pr.noise_path).read_all()
    assert np.abs(noise).max() <= cfg.eps and np.abs(noise).max() > 0


@pytest.mark.parametrize("spec, message", [
    ({"kind": "em", "eot": [{"kind": "strip_trigger"}]}, "eot[0] kind 'strip_trigger' changes no image"),
    ({"kind": "em", "eot": [{"kind": "jpeg", "sigma": 1}]}, "method eot[0]': ['sigma'] not allowed for kind jpeg"),
    ({"kind": "random_noise", "eot": [{"kind": "jpeg"}]}, "eot needs an optimised noise"),
])
def test_eot_config_errors(spec, message):
    from unlearnable import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        method_config(spec)


def test_strong_em_is_the_noise_only_studys_best_at_image_granularity(dataset, tmp_path):
    """The shipped noise-only method: no trigger, 16/255, twice em's rounds and PGD steps; with the study's
    schedule keys it is exactly noise-only.yaml's em-eps16-long; every key can still be overridden."""
    import yaml

    grid = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/grids/noise-only.yaml").read_text())
    study = method_config(grid["methods"]["em-eps16-long"])
    shipped = method_config({"kind": "strong_em", "granularity": "image", "surrogate_steps": 40, "lr": 0.001})
    assert shipped.__dict__ == {**study.__dict__, "method": "strong_em"}
    assert shipped.trigger_len == 0 and shipped.eps == 16 and shipped.optimises and shipped.eot == ()
    train, store = dataset
    cfg = method_config({"kind": "strong_em", "rounds": 1, "surrogate_steps": 1, "pgd_steps": 4, "step": 3,
                         "batch_size": 32})
    protect(train, store, ModelSpec("tiny-vit"), cfg, 0, "cpu", tmp_path / "strong")
    noise = np.load(tmp_path / "strong" / "noise.npy")
    assert np.load(tmp_path / "strong" / "triggers.npy").shape[1] == 0
    assert 8 < np.abs(noise).max() <= 16  # 4 steps of 3 from zero: beyond the 8/255 of em and mem


def test_an_ensemble_of_surrogates_trains_each_and_averages_their_losses(dataset, tmp_path):
    """Protection against an ensemble: every member's surrogate training steps on each batch, and PGD's loss is
    the mean of the members' losses (checked against the members' own losses at the first step)."""
    from unlearnable.clip.encoders import EnsembleEncoder

    train, store = dataset
    torch.manual_seed(3)
    members = [Encoder(create_model(ModelSpec(a)), torch.device("cpu")) for a in ("tiny-vit", "tiny-vit")]
    ens = EnsembleEncoder(members)
    x = torch.from_numpy(open_image_store(store)[train["image_index"].to_numpy()[:8]]).permute(0, 3, 1, 2).float()
    caps = tokenize(TOK, train["caption"].tolist()[:8])
    scale = torch.stack([m.model.logit_scale.exp().detach() for m in members]).view(-1, 1, 1)
    with torch.no_grad():
        txt = ens.text(caps)
    assert txt.shape[0] == 2 and torch.allclose(txt[1], members[1].text(caps))
    _, loss = error_minimizing_pgd(ens, x, x.clone(), lambda t: txt, 8, 1, 1, scale)
    each = [clip_loss(m.image(x), txt[i], scale[i, 0, 0]) for i, m in enumerate(members)]
    assert float(loss) == pytest.approx(float(sum(each).detach() / 2), rel=1e-5)

    cfg = method_config({"kind": "strong_em", "rounds": 1, "surrogate_steps": 2, "pgd_steps": 2, "batch_size": 16})
    before = [{k: v.clone() for k, v in m.model.state_dict().items()} for m in members]
    pr = Protector(cfg, members, ProtectData(open_image_store(store), Units(train, "image"),
                                             tokenize(TOK, train["caption"].tolist()), trigger_vocabulary(TOK)),
                   tmp_path / "w", 0)
    pr.run()
    for m, old in zip(members, before):  # each member was trained
        assert any(not torch.equal(v, old[k]) for k, v in m.model.state_dict().items())
    meta = protect(train, store, [ModelSpec("tiny-vit"), ModelSpec("tiny-rn")], cfg, 0, "cpu", tmp_path / "p")
    assert len(meta["surrogate"]) == 2 and len(meta["surrogate_start_sha256"]) == 2
    with pytest.raises(Exception, match="ensemble of surrogates"):
        protect(train, store, [ModelSpec("tiny-vit")] * 2, method_config({"kind": "mem"}), 0, "cpu", tmp_path / "m")
    with pytest.raises(Exception, match="share an input resolution.*RN50 224 px"):
        protect(train, store, [ModelSpec("tiny-vit"), ModelSpec("RN50")], cfg, 0, "cpu", tmp_path / "r")


def test_robust_em_is_the_robustness_grids_lowfreq8_eot_short():
    """The shipped kind is what the robustness grid measured: em's schedule at strong_em's budget in 8 x 8
    squares, optimised through the scraper chain (docs/results.md)."""
    import yaml

    grid = yaml.safe_load((REPO / "config/grids/robust.yaml").read_text())["methods"]
    measured = method_config(grid["lowfreq8_eot_short"])
    shipped = method_config({"kind": "robust_em", "surrogate_steps": 40, "lr": 0.001})
    assert shipped.__dict__ == {**measured.__dict__, "method": "robust_em"}
    assert shipped.optimises and shipped.trigger_len == 0


def test_read_ahead_reads_the_next_batch_while_this_one_runs_and_never_a_stale_row(tmp_path):
    """The next batch's rows are being read once this batch's are handed over; a folded tail batch, which
    shares units with the batch before it, is read after that batch's rows are rewritten, so it sees them."""
    from unlearnable.protect.readahead import ReadAhead

    noise = RowFile.create(tmp_path / "n.npy", (10, 2, 2, 3), np.int8)
    noise.write(np.arange(10), np.arange(10, dtype=np.int8)[:, None, None, None].repeat(12, 1).reshape(10, 2, 2, 3))
    batches = [np.array([3, 1, 4]), np.array([0, 5, 9]), np.array([2, 6, 8]), np.array([6, 8, 7])]  # 7 folded in
    with ReadAhead(noise, batches, 0) as ahead:
        for j, units in enumerate(batches):
            rows = ahead.rows(j)
            assert (j + 1 in ahead.pending) == (j + 1 < len(batches) and j + 1 != 3)  # read ahead, except the fold
            assert np.array_equal(rows[:, 0, 0, 0], noise[units][:, 0, 0, 0])  # never a stale row
            noise.write(units, rows - 50)  # this batch's rewrite, in place
    # 6 and 8 were rewritten twice: the fold read their first rewrite
    assert noise[np.arange(10)][:, 0, 0, 0].tolist() == [v - (100 if v in (6, 8) else 50) for v in range(10)]


class _Killed(BaseException):
    """A kill at a syscall: no `except Exception` of the code under test can catch it."""


def _kill_at(monkeypatch, n: int, after: bool, calls: list) -> None:
    """Die at the n-th write (pwrite of noise rows, undo record), rename or unlink of the protection, before or
    after it takes effect; `calls` collects what each call was."""
    import builtins

    from unlearnable.protect import commit

    def wrap(name, fn):
        def call(*args, **kwargs):
            calls.append((name, str(args[0]) if args and not isinstance(args[0], int) else name))
            if len(calls) == n and not after:
                raise _Killed(name)
            try:
                return fn(*args, **kwargs)
            finally:  # after it took effect, or failed (an unlink of a missing file)
                if len(calls) == n and after:
                    raise _Killed(name)
        return call

    for name in ("replace", "rename", "unlink", "pwrite"):
        monkeypatch.setattr(os, name, wrap(name, getattr(os, name)))
    real_open = builtins.open

    class _LogFile:  # the undo log's append: a record written whole or cut short
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            return wrap("append", self.f.write)(data)

    monkeypatch.setattr(commit, "open", lambda p, mode="r", *a, **kw: (
        _LogFile(real_open(p, mode, *a, **kw)) if "a" in mode else real_open(p, mode, *a, **kw)), raising=False)


@pytest.mark.parametrize("granularity,batch,images", [("image", 8, 12), ("pair", 10, 4)])
def test_a_kill_at_every_write_rename_and_unlink_of_the_commits_resumes_to_the_same_bytes(
        dataset, tmp_path, monkeypatch, granularity, batch, images):
    """Fault injection over a whole protection (12 images, or the 20 pairs of 4; 2 rounds, 2 batches a pass, a
    marker after every batch): die right after every write, rename and unlink (and before the first), resume,
    and end with the bytes of an uninterrupted run. A kill before call n leaves what a kill after call n-1 does:
    between the two only memory and temporaries change. A resume once replayed a stale undo log over committed
    noise when the kill fell between a commit and the removal of its log."""
    train, store = dataset
    small = (train[train["image_id"].isin(sorted(train["image_id"].unique())[:images])].reset_index(drop=True),
             store)
    cfg = ProtectConfig(**{**SMALL.__dict__, "rounds": 2, "batch_size": batch, "granularity": granularity,
                           "surrogate_steps": 1, "candidates": 2, "hotflip_rounds": 1, "pgd_steps": 1})

    def protector(work):
        pr = _protector(small, work, cfg)
        pr.commit_seconds = 0.0  # a marker after every batch: every kind of commit, twice a pass
        return pr

    full, calls = protector(tmp_path / "ref"), []
    with monkeypatch.context() as m:
        _kill_at(m, 0, False, calls)
        full.run()
    want_noise, want_trig = RowFile(full.noise_path).read_all(), full.triggers.clone()
    assert {"replace", "unlink", "pwrite", "append"} <= {name for name, _ in calls}
    for n, after in [(1, False)] + [(n, True) for n in range(1, len(calls) + 1)]:
        work = tmp_path / f"k{n}{'a' if after else 'b'}"
        with monkeypatch.context() as m, pytest.raises(_Killed):
            _kill_at(m, n, after, [])
            protector(work).run()
        resumed = protector(work)
        resumed.run()
        where = f"killed {'after' if after else 'before'} call {n} of {len(calls)}: {calls[n - 1]}"
        assert np.array_equal(RowFile(resumed.noise_path).read_all(), want_noise), where
        assert torch.equal(resumed.triggers, want_trig), where
        assert [h["pgd_loss"] for h in resumed.history] == [h["pgd_loss"] for h in full.history], where


def test_each_rounds_log_line_says_whether_it_searched_the_triggers(dataset, tmp_path, caplog):
    """A round with HotFlip logs the loss before and after it; a round without says so, not `nan -> nan`."""
    import logging

    cfg = dataclasses.replace(SMALL, rounds=2, hotflip_rounds=1)
    with caplog.at_level(logging.INFO, logger="unlearnable.protect.engine"):
        _protector(dataset, tmp_path, cfg).run()
    rounds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("round ")]
    assert len(rounds) == 2 and "nan" not in " ".join(rounds)
    assert re.search(r"flip \d+\.\d+ -> \d+\.\d+", rounds[0]) and "no HotFlip" in rounds[1]
