"""What a scraper can do to a published folder before training on it: small, named, parameterised transforms,
alone or chained in the order a scraper runs them.

Image defences map a uint8 HWC image to one of the same size. Caption defences map a folder's captions
(with the image each belongs to) to new captions; they are blind to the trigger, except `strip_trigger`, the
adaptive attacker who knows MEM puts k tokens right after start-of-text, and `unlikely_words`, the adaptive
attacker who knows a trigger hides among ordinary words. `augment` changes no bytes: it turns on
random-resized-crop + flip while the victim trains. A chain (`kind: chain` with `steps`, or a shipped one such
as `scraper`) applies its image steps in order to every image and its caption steps in order to the captions.
"""
from __future__ import annotations

import gzip
import io
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .. import ConfigError, DataError

WORDLIST = Path(__file__).resolve().parents[1] / "data" / "web2_words.txt.gz"  # Webster's 2nd (1934, public domain)
IMAGE_KINDS = ("jpeg", "resize", "grayscale", "blur", "bits")
TEXT_KINDS = ("rare_words", "wordlist", "drop_first", "strip_trigger", "unlikely_words")
PARAMS = {"none": {}, "jpeg": {"quality": 75}, "resize": {"scale": 0.5}, "grayscale": {}, "blur": {"sigma": 1.0},
          "bits": {"bits": 4}, "rare_words": {}, "wordlist": {}, "drop_first": {"k": 3}, "strip_trigger": {"k": 3},
          "unlikely_words": {"k": 3}, "augment": {"scale_min": 0.5}}
# Shipped chains, in the order a scraper runs them: caption cleaning, then the image pipeline, then training
# with augmentation, each step at its defaults above. `scraper` is the routine one (strip 3 tokens, resize by
# 0.5, JPEG 75, crops of at least half the area); `scraper_hard` is harder on images (blur, then JPEG 30).
SCRAPER = "scraper"  # what robust_em's noise is optimised through
CHAINS = {
    SCRAPER: ({"kind": "strip_trigger"}, {"kind": "rare_words"}, {"kind": "resize"}, {"kind": "jpeg"},
              {"kind": "augment"}),
    "scraper_hard": ({"kind": "strip_trigger"}, {"kind": "rare_words"}, {"kind": "blur"},
                     {"kind": "jpeg", "quality": 30}, {"kind": "augment"}),
}
KINDS = sorted(PARAMS) + ["chain"] + sorted(CHAINS)


@dataclass(frozen=True)
class Defence:
    kind: str = "none"
    params: dict = field(default_factory=dict)
    steps: tuple["Defence", ...] = ()  # a chain's steps, in order (empty for a single defence)

    @classmethod
    def from_config(cls, name: str, spec: dict, key: str | None = None) -> "Defence":
        """`key`: where the spec sits in the config, for errors (default `defences.<name>`)."""
        key = key or f"defences.{name}"
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"config key '{key}.kind': {kind!r} is not one of {KINDS}")
        if kind in CHAINS or kind == "chain":
            return cls._chain(kind, spec, key)
        params = {**PARAMS[kind], **{k: v for k, v in spec.items() if k != "kind"}}
        unknown = set(params) - set(PARAMS[kind])
        if unknown:
            raise ConfigError(f"config key '{key}': {sorted(unknown)} not allowed for kind {kind} "
                              f"(allowed: {sorted(PARAMS[kind]) or 'none'})")
        return cls(kind, params)

    @classmethod
    def _chain(cls, kind: str, spec: dict, key: str) -> "Defence":
        extra = set(spec) - {"kind", "steps"} if kind == "chain" else set(spec) - {"kind"}
        if extra:
            raise ConfigError(f"config key '{key}': {sorted(extra)} not allowed for kind {kind} "
                              f"({'only steps' if kind == 'chain' else 'a shipped chain takes no parameters'})")
        specs = spec.get("steps") if kind == "chain" else CHAINS[kind]
        if not specs:
            raise ConfigError(f"config key '{key}.steps': a chain needs at least one step")
        steps = []
        for i, step in enumerate(specs):
            d = cls.from_config(key, dict(step), key=f"{key}.steps[{i}]")
            steps.extend(d.parts)  # a chain inside a chain is its steps
        augments = [s for s in steps if s.kind == "augment"]
        if len(augments) > 1:
            raise ConfigError(f"config key '{key}.steps': training augmentation appears {len(augments)} times")
        return cls(kind, {}, tuple(steps))

    @classmethod
    def parse(cls, text: str, key: str = "--defence") -> "Defence":
        """`kind` or `kind:param=value,...` (e.g. `jpeg:quality=30`), as given on the command line; steps
        joined by `+` make a chain (`strip_trigger+rare_words+jpeg:quality=75`)."""
        if "+" in text:
            steps = [cls._parse_spec(part, text, key) for part in text.split("+")]
            return cls.from_config(text, {"kind": "chain", "steps": steps}, key=f"{key} {text}")
        return cls.from_config(text, cls._parse_spec(text, text, key), key=f"{key} {text}")

    @staticmethod
    def _parse_spec(part: str, text: str, key: str) -> dict:
        kind, _, params = part.partition(":")
        spec: dict = {"kind": kind.strip()}
        for item in filter(None, (x.strip() for x in params.split(","))):
            name, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"{key} {text!r}: expected param=value, got {item!r}")
            for convert in (int, float, str):
                try:
                    spec[name.strip()] = convert(value.strip())
                    break
                except ValueError:
                    continue
        return spec

    @property
    def parts(self) -> tuple["Defence", ...]:
        """The single defences this one applies, in order."""
        return self.steps if self.steps else (self,)

    @property
    def changes_images(self) -> bool:
        return any(p.kind in IMAGE_KINDS for p in self.parts)

    @property
    def changes_captions(self) -> bool:
        return any(p.kind in TEXT_KINDS for p in self.parts)

    @property
    def needs_tokenizer(self) -> bool:
        """Only strip_trigger counts CLIP tokens; the job skips open_clip (and torch) for every other defence."""
        return any(p.kind == "strip_trigger" for p in self.parts)

    @property
    def changes_files(self) -> bool:
        """False when the defence only augments in training: the victim trains on the undefended folder."""
        return self.changes_images or self.changes_captions

    @property
    def augment_scale_min(self) -> float | None:
        """The training augmentation this defence turns on (smallest crop area), or None."""
        return next((float(p.params["scale_min"]) for p in self.parts if p.kind == "augment"), None)

    def describe(self) -> dict:
        """As written in defence.json: the kind and its parameters, a chain with its steps."""
        if self.steps:
            return {"kind": self.kind, "steps": [s.describe() for s in self.steps]}
        return {"kind": self.kind, **self.params}

    def image(self, img: np.ndarray) -> np.ndarray:
        for p in self.parts:
            if p.kind in IMAGE_KINDS:
                img = IMAGE_DEFENCES[p.kind](img, **p.params)
        return img

    def captions(self, image_ids: list[str], captions: list[str], tok=None) -> list[str]:
        captions = list(captions)
        for p in self.parts:
            if p.kind in TEXT_KINDS:
                captions = p._caption_step(image_ids, captions, tok)
        return captions

    def _caption_step(self, image_ids: list[str], captions: list[str], tok) -> list[str]:
        if self.kind == "rare_words":
            return rare_words(image_ids, captions)
        if self.kind == "wordlist":
            return keep_listed_words(captions, english_words())
        if self.kind == "drop_first":
            return [" ".join(c.split()[self.params["k"]:]) for c in captions]
        if self.kind == "unlikely_words":
            return drop_unlikely_words(captions, self.params["k"])
        if tok is None:
            raise ValueError("strip_trigger needs the CLIP tokenizer")
        return strip_first_tokens(captions, self.params["k"], tok)


# -- images -----------------------------------------------------------------------------------------------
def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as a JPEG (PIL's defaults: 4:2:0 chroma subsampling, as most re-encoders do) and decode."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def resize(img: np.ndarray, scale: float) -> np.ndarray:
    """Down by `scale` and back up (bicubic both ways): what a thumbnailer then an upscaler leave."""
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)


def grayscale(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img).convert("L").convert("RGB"), dtype=np.uint8)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=float(sigma))), dtype=np.uint8)


def bits(img: np.ndarray, bits: int) -> np.ndarray:
    """Bit-depth reduction (feature squeezing): 2**bits evenly spaced levels over 0..255."""
    levels = 2 ** int(bits) - 1
    return (np.round(img.astype(np.float32) / 255 * levels) / levels * 255).round().astype(np.uint8)


IMAGE_DEFENCES = {"jpeg": jpeg, "resize": resize, "grayscale": grayscale, "blur": blur, "bits": bits}


# -- captions ---------------------------------------------------------------------------------------------
def _key(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.lower())


def rare_words(image_ids: list[str], captions: list[str]) -> list[str]:
    """Drop every word that occurs in the captions of only one image (a cleaner's rare-token filter)."""
    images_of = defaultdict(set)
    for image, caption in zip(image_ids, captions):
        for word in caption.split():
            images_of[word.lower()].add(image)
    return [" ".join(w for w in c.split() if len(images_of[w.lower()]) > 1) for c in captions]


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    with gzip.open(WORDLIST, "rt", encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip())


def keep_listed_words(captions: list[str], words: frozenset[str]) -> list[str]:
    """Keep the words of a fixed English word list (case and punctuation ignored) and bare punctuation."""
    return [" ".join(w for w in c.split() if not _key(w) or _key(w) in words) for c in captions]


def drop_unlikely_words(captions: list[str], k: int) -> list[str]:
    """The adaptive attacker against triggers hidden among ordinary words: a unigram model of the folder's
    own captions (case and punctuation ignored) scores each word, and each caption loses its k least
    likely words, by the sum of -log p over a word's occurrences per caption. Ties keep the earlier word.
    A trigger word repeated across many captions is frequent, so this attacker removes what is rare per
    caption: the words only a trigger would make unusual there."""
    counts = Counter(_key(w) for c in captions for w in c.split() if _key(w))
    total = sum(counts.values()) or 1
    out = []
    for caption in captions:
        words = caption.split()
        scored = [(math.log(counts[_key(w)] / total), i) for i, w in enumerate(words) if _key(w)]
        drop = {i for _, i in sorted(scored)[:k]}
        out.append(" ".join(w for i, w in enumerate(words) if i not in drop))
    return out


def strip_first_tokens(captions: list[str], k: int, tok) -> list[str]:
    """The adaptive attacker: drop the k CLIP tokens right after start-of-text, where MEM puts its trigger.

    The rest of the caption is cut from the tokenizer's own cleaned text (lower case, whitespace collapsed),
    not decoded from tokens, so its punctuation and spacing stay as written; a cut inside a word keeps the
    word's remaining pieces."""
    out = []
    for caption in captions:
        text, left, rest = tok.clean_fn(caption), k, ""
        for m in tok.pat.finditer(text):
            pieces = tok.bpe("".join(tok.byte_encoder[b] for b in m.group().encode("utf-8"))).split(" ")
            if left < len(pieces):
                head = tok.decode([tok.encoder[p] for p in pieces[left:]]).strip() if left else ""
                rest = (head + " " if head else "") + text[m.end() if left else m.start():].strip()
                break
            left -= len(pieces)
        out.append(rest.strip())
    return out


# -- a defended folder ------------------------------------------------------------------------------------
def defend_folder(rows, store_path: str | Path, defence: Defence, tok, out_dir: str | Path,
                  workers: int = 2) -> dict:
    """Write what a scraper trains on after its defence, in the layout of a published folder.

    `rows`: the train rows of a manifest (a published folder's, or a clean dataset's) and `store_path` their
    image store at model resolution. Output: `images/*.png` (one per image, defended), `captions.csv`
    (defended), `manifest.parquet`, `images.npy` and `defence.json`. Captions a defence empties, and rows it
    makes duplicates, are dropped and counted, as a scraper would drop them.
    """
    from ..atomic import atomic_path
    from ..data.folders import DefendedDir
    from ..data.folder import save_pngs, write_layout
    from ..data.image_store import open_image_store

    rows = rows.reset_index(drop=True)
    images = open_image_store(store_path)
    first = rows.drop_duplicates("image_index")
    names = {i: f"{image_id}.png" for i, image_id in zip(first["image_index"], first["image_id"])}
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        index = first["image_index"].to_numpy()
        save_pngs(tmp / "images", (([names[i] for i in index[s:s + 1024]], images[index[s:s + 1024]])
                                   for s in range(0, len(index), 1024)), workers, defence.image)
        captions = defence.captions(rows["image_id"].tolist(), rows["caption"].tolist(), tok)
        kept, quality = write_layout(tmp, [names[i] for i in rows["image_index"]], captions, images.shape[1], workers,
                                     on_bad_sample="skip")
        if kept.empty:
            raise DataError(f"{out_dir}: defence {defence.describe()} left no caption to train on")
        changed = sum(a != b for a, b in zip(rows["caption"], captions))
        meta = {"defence": defence.describe(), "source_store": str(store_path),
                "images": len(index), "captions_in": len(rows), "captions_kept": len(kept),
                "captions_changed": changed, "dropped": dict(quality.dropped)}
        DefendedDir(tmp).write_record(meta)
    return meta
