"""Triggers that caption cleaning cannot strip: common English words at a seeded place inside the caption."""
import numpy as np
import pandas as pd
import pytest
import torch

from unlearnable.clip.models import ModelSpec, tokenizer
from unlearnable.clip.text import insert_trigger, published_caption, token_positions, tokenize
from unlearnable.defend.defences import Defence, english_words
from unlearnable.protect.config import method_config
from unlearnable.protect.export import export_published
from unlearnable.protect.run import protect
from unlearnable.protect.trigger_words import common_word_vocabulary, inside_positions

TOK = tokenizer("tiny-vit")


def test_a_trigger_inside_the_caption_round_trips_through_the_published_text():
    caps = ["a red circle, at the top-left", "two dogs", "snowboarders ride"]
    trig = torch.tensor([TOK.encode("zebra violin"), TOK.encode("apple house"), TOK.encode("river stone")])
    words = [2, 1, 2]
    pub = [published_caption(TOK, t, c, w) for t, c, w in zip(trig, caps, words)]
    assert pub == ["a red zebra violin circle, at the top-left", "two apple house dogs",
                   "snowboarders ride river stone"]
    at = token_positions(TOK, caps, words)
    assert at.tolist() == [3, 2, 1 + len(TOK.encode("snowboarders ride"))]
    assert torch.equal(tokenize(TOK, pub), insert_trigger(tokenize(TOK, caps), trig, at))
    assert torch.equal(insert_trigger(tokenize(TOK, caps), trig, torch.ones(3, dtype=torch.long)),
                       insert_trigger(tokenize(TOK, caps), trig))  # position 1 is the paper's place


def test_common_words_are_frequent_english_words_the_captions_never_use():
    caps = ["a red circle at the top", "this is a blue square"]
    vocab = common_word_vocabulary(TOK, 32, caps)
    words = [TOK.decode([i]).strip() for i in vocab.tolist()]
    assert len(words) == 32 and "this" not in words and "the" not in words
    assert all(w.isalpha() and len(w) >= 4 and w in english_words() and TOK.encode(w) == [i]
               for w, i in zip(words, vocab.tolist()))
    assert vocab.tolist() == sorted(vocab.tolist())  # the lowest BPE ranks: the most frequent merges


def test_inside_positions_are_after_the_first_word_and_seeded():
    caps = ["one", "one two three", "", "a b c d e f"]
    p = inside_positions(caps, torch.Generator().manual_seed(0))
    assert p[0] == 1 and 1 <= p[1] <= 3 and p[2] == 0 and 1 <= p[3] <= 6
    assert np.array_equal(p, inside_positions(caps, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("kind", ["mem", "random_trigger"])
def test_common_word_triggers_inside_the_caption_survive_caption_cleaning(
        shapes_store, tmp_path, kind):
    df, store = shapes_store
    train = df[df.split == "train"].reset_index(drop=True)
    spec = {"kind": kind, "granularity": "image", "token_num": 2, "common_words": 8, "trigger_position": "inside"}
    if kind == "mem":
        spec.update(rounds=1, surrogate_steps=1, pgd_steps=1, hotflip_rounds=1, candidates=4, batch_size=16)
    protect(train, store, ModelSpec("tiny-vit"), method_config(spec), 0, "cpu", tmp_path / "p")
    vocab = set(common_word_vocabulary(TOK, 8, train["caption"].tolist()).tolist())
    triggers = np.load(tmp_path / "p" / "triggers.npy")
    assert set(np.unique(triggers).tolist()) <= vocab
    units = pd.read_parquet(tmp_path / "p" / "units.parquet")
    assert (units["trigger_word"] >= 1).all()  # never right after start-of-text
    meta = export_published(train, store, tmp_path / "p", "both", TOK, tmp_path / "pub", workers=1)
    assert meta["trigger_roundtrip_rate"] == 1.0
    pub = pd.read_csv(tmp_path / "pub" / "captions.csv", keep_default_na=False)
    trigger_words = {TOK.decode([i]).strip() for i in vocab}

    def kept(captions):  # share of the published trigger words still in the text
        have = sum(w in trigger_words for c in captions for w in c.split())
        return have / (len(captions) * 2)

    ids = pub["image"].tolist()
    assert kept(pub["caption"].tolist()) == 1.0
    for defence in ("strip_trigger", "drop_first", "rare_words", "wordlist"):
        after = Defence.from_config("d", {"kind": defence}).captions(ids, pub["caption"].tolist(), TOK)
        assert kept(after) > 0.85, defence  # the words a start-of-text trigger loses to each cleaner stay
