"""Each defence changes exactly what it says: the bytes or the text."""
import numpy as np
import pytest

from unlearnable import ConfigError, DataError
from unlearnable.clip.models import tokenizer
from unlearnable.clip.text import published_caption
from unlearnable.defend.defences import Defence, english_words


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.float32)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def d(kind, **params):
    return Defence.from_config("test", {"kind": kind, **params})


def test_jpeg_decodes_to_the_same_size_and_differs_more_at_lower_quality(photo):
    q75, q30 = d("jpeg", quality=75).image(photo), d("jpeg", quality=30).image(photo)
    assert q75.shape == q30.shape == photo.shape and q75.dtype == np.uint8
    err = [np.abs(q.astype(int) - photo).mean() for q in (q75, q30)]
    assert 0 < err[0] < err[1]


def test_resize_keeps_the_size_and_loses_detail(photo):
    out = d("resize", scale=0.5).image(photo)
    assert out.shape == photo.shape and not np.array_equal(out, photo)
    hf = lambda im: np.abs(np.diff(im.astype(int), axis=1)).mean()  # noqa: E731
    assert hf(out) < 0.8 * hf(photo)


def test_grayscale_has_equal_channels(photo):
    out = d("grayscale").image(photo)
    assert out.shape == photo.shape and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert not (photo[..., 0] == photo[..., 1]).all()


def test_blur_smooths(photo):
    out = d("blur", sigma=1).image(photo)
    assert out.shape == photo.shape and out.astype(float).std() < photo.astype(float).std()


def test_bit_depth_reduction_leaves_at_most_16_levels(photo):
    out = d("bits", bits=4).image(photo)
    assert len(np.unique(out)) <= 16 and len(np.unique(photo)) > 16
    assert np.abs(out.astype(int) - photo).max() <= 9  # half a level of 255/15


def test_image_defences_leave_captions_and_caption_defences_leave_images(photo):
    caps = ["a dog runs", "a cat sits"]
    assert d("jpeg").captions(["a", "b"], caps) == caps
    assert np.array_equal(d("rare_words").image(photo), photo)
    assert np.array_equal(d("augment").image(photo), photo) and d("augment").captions(["a", "b"], caps) == caps


def test_rare_word_filter_drops_a_word_of_one_image_and_keeps_a_word_of_two():
    ids = ["i1", "i1", "i2", "i3"]
    caps = ["zebra grazes", "the zebra eats", "the dog grazes", "quokka smiles"]
    out = d("rare_words").captions(ids, caps)
    # zebra: only image i1 (twice) -> dropped; grazes and the: two images -> kept; quokka, smiles: one image
    assert out == ["grazes", "the", "the grazes", ""]


def test_wordlist_keeps_english_words_and_drops_others():
    words = english_words()
    assert {"dog", "running", "beach"} <= words and "xqzt" not in words
    out = d("wordlist").captions(["a"], ["A dog , xqzt running on the Beach."])
    assert out == ["A dog , running on the Beach."]


def test_drop_first_k_words():
    assert d("drop_first", k=2).captions(["a", "b"], ["one two three four", "one"]) == ["three four", ""]


def test_adaptive_attacker_removes_exactly_the_trigger():
    tok = tokenizer("tiny-vit")
    trigger = tok.encode("zebra umbrella violin")
    assert len(trigger) == 3
    caption = "two dogs play in the snow, near a three-sided shed"
    published = published_caption(tok, trigger, caption)
    assert d("strip_trigger", k=3).captions(["a"], [published], tok) == [caption]  # exactly: spacing kept
    assert d("strip_trigger", k=1).captions(["a"], ["snowboarders ride"], tok) == ["boarders ride"]  # inside a word


def test_unlikely_words_drops_the_k_words_rarest_in_the_folder():
    caps = ["a red square", "a red circle", "a blue square", "a red square zebra"]
    # counts: a 4, red 3, square 3, circle 1, blue 1, zebra 1: each caption loses its rarest word; ties keep
    # the earlier word and drop the later ones only when k reaches them
    assert d("unlikely_words", k=1).captions(list("abcd"), caps) == ["a square", "a red", "a square",
                                                                    "a red square"]
    assert d("unlikely_words", k=2).captions(["a"], ["one"]) == [""]


def test_a_chain_applies_its_image_steps_in_order(photo):
    """resize then JPEG differs from JPEG then resize: each order gives exactly its steps in that order."""
    steps = [{"kind": "resize", "scale": 0.5}, {"kind": "jpeg", "quality": 30}]
    forward = Defence.from_config("c", {"kind": "chain", "steps": steps})
    backward = Defence.from_config("c", {"kind": "chain", "steps": steps[::-1]})
    want = d("jpeg", quality=30).image(d("resize", scale=0.5).image(photo))
    assert np.array_equal(forward.image(photo), want)
    assert np.array_equal(backward.image(photo), d("resize", scale=0.5).image(d("jpeg", quality=30).image(photo)))
    assert not np.array_equal(forward.image(photo), backward.image(photo))


def test_a_chain_applies_its_caption_steps_in_order_and_images_separately(photo):
    """drop_first then rare_words differs from the reverse; image steps leave the text, caption steps the
    pixels, and augmentation is only a training setting."""
    ids, caps = ["i1", "i2", "i3"], ["zebra the dog runs", "the dog sits", "dog the cat"]
    chain = Defence.parse("drop_first:k=1+blur:sigma=1+rare_words+augment:scale_min=0.3")
    assert chain.captions(ids, caps) == d("rare_words").captions(ids, d("drop_first", k=1).captions(ids, caps))
    rev = Defence.parse("rare_words+drop_first:k=1")
    assert chain.captions(ids, caps) == ["the dog", "dog", "the"] != rev.captions(ids, caps)
    assert np.array_equal(chain.image(photo), d("blur", sigma=1).image(photo))
    assert chain.augment_scale_min == 0.3 and chain.changes_images and chain.changes_captions
    only_aug = Defence.parse("augment")
    assert only_aug.augment_scale_min == 0.5 and not only_aug.changes_files
    assert d("jpeg").augment_scale_min is None


def test_the_shipped_scraper_chains_run_caption_cleaning_images_then_augmentation(photo):
    tok = tokenizer("tiny-vit")
    scraper, hard = d("scraper"), d("scraper_hard")
    assert [p.kind for p in scraper.parts] == ["strip_trigger", "rare_words", "resize", "jpeg", "augment"]
    assert [p.kind for p in hard.parts] == ["strip_trigger", "rare_words", "blur", "jpeg", "augment"]
    assert hard.parts[3].params == {"quality": 30} and scraper.parts[3].params == {"quality": 75}
    assert np.array_equal(scraper.image(photo), d("jpeg", quality=75).image(d("resize", scale=0.5).image(photo)))
    published = [published_caption(tok, tok.encode("zebra umbrella violin"), c)
                 for c in ("a dog runs", "a dog sits", "a cat sits")]
    assert scraper.captions(["i1", "i2", "i3"], published, tok) == ["a dog", "a dog sits", "a sits"]
    assert scraper.describe()["steps"][2] == {"kind": "resize", "scale": 0.5}


def test_bad_chains_name_the_step():
    with pytest.raises(ConfigError, match=r"defences.c.steps\[1\].kind"):
        Defence.from_config("c", {"kind": "chain", "steps": [{"kind": "jpeg"}, {"kind": "jpg"}]})
    with pytest.raises(ConfigError, match="at least one step"):
        Defence.from_config("c", {"kind": "chain", "steps": []})
    with pytest.raises(ConfigError, match="augmentation appears 2 times"):
        Defence.parse("augment+jpeg+augment")
    with pytest.raises(ConfigError, match="takes no parameters"):
        Defence.from_config("c", {"kind": "scraper", "quality": 30})


def test_unknown_kind_or_parameter_names_the_key():
    with pytest.raises(ConfigError, match="defences.test.kind"):
        Defence.from_config("test", {"kind": "jpg"})
    with pytest.raises(ConfigError, match=r"defences.test.*\['sigma'\].*kind jpeg"):
        Defence.from_config("test", {"kind": "jpeg", "sigma": 2})


def test_a_defended_folder_holds_the_defended_bytes_and_text(shapes_store, tmp_path):
    import pandas as pd

    from unlearnable.data.image_store import open_image_store
    from unlearnable.data.manifest import read_manifest
    from unlearnable.defend.defences import defend_folder

    df, store = shapes_store
    train = df[df.split == "train"]
    meta = defend_folder(train, store, d("grayscale"), None, tmp_path / "gray", workers=1)
    out = open_image_store(tmp_path / "gray" / "images.npy")
    m = read_manifest(tmp_path / "gray" / "manifest.parquet")
    assert meta["captions_kept"] == len(train) == len(m) and meta["captions_changed"] == 0
    px = out[m["image_index"].to_numpy()]
    assert (px[..., 0] == px[..., 1]).all()
    src = open_image_store(store)[train["image_index"].to_numpy()]
    want = np.stack([d("grayscale").image(x) for x in src])
    assert np.array_equal(px, want)  # row for row: the same images, defended
    assert list(m["caption"]) == list(train["caption"])

    meta = defend_folder(train, store, d("drop_first", k=12), None, tmp_path / "short", workers=1)
    short = pd.read_csv(tmp_path / "short" / "captions.csv", keep_default_na=False)
    assert len(short) == len(train) and meta["captions_kept"] + sum(meta["dropped"].values()) == len(train)
    assert meta["dropped"]["empty_caption"] == (short["caption"] == "").sum() > 0  # dropped, as a scraper would
    with pytest.raises(DataError, match="drop_first.*left no caption"):
        defend_folder(train, store, d("drop_first", k=99), None, tmp_path / "empty", workers=1)
    assert not (tmp_path / "empty").exists()  # nothing that looks complete
