"""The MEM loop (and EM, its image-only special case), resumable round by round.

Each round: (1) train the surrogate CLIP for `surrogate_steps` on the currently protected data;
(2) one pass over every unit: HotFlip on its trigger (first `hotflip_rounds` rounds), then error-minimising
PGD on its noise with caption shuffling (cluster units: every image, its cluster's noise shared). The pass's
PGD loss is the loss at each batch's last PGD step.

The noise lives in one file whose rows a pass rewrites in place (`commit.py`: an undo log and a marker), so a
protection never needs two full copies of its noise. The surrogate and its optimiser are checkpointed once a
round, when its training ends (`state.pt`; the pass does not change them); the RNG, the data stream, the
triggers, the colour transforms and the pass's position with every marker (`marker.pt`, every
`commit_seconds`, whenever the undo log reaches its limit, and at the end of a pass). A job killed anywhere
resumes from there and ends bit-identical to an uninterrupted run (on the CPU).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import ConfigError
from ..atomic import atomic_path
from ..clip.encoders import EnsembleEncoder, Encoder
from ..clip.text import insert_trigger
from ..clip.train import ContrastiveTrainer, make_optimizer, mean_loss
from ..data.folders import ProtectionDir
from ..data.rowfile import RowFile
from ..usage import peak_rss_mib
from .commit import UndoLog, write_progress
from .config import ProtectConfig
from .eot import ScraperTransforms
from .hotflip import hotflip
from .pgd import (block_expand, block_reduce, colour_noise_pgd, colour_shift, error_minimizing_pgd,
                  shared_noise_pgd)
from .readahead import ReadAhead
from .units import Units

log = logging.getLogger(__name__)


class BatchStream:
    """An endless stream of shuffled, drop-last batches whose position survives a checkpoint."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.bs, self.gen = n, min(batch_size, n), generator
        self.perm, self.pos = torch.randperm(n, generator=generator), 0

    def next(self) -> np.ndarray:
        if self.pos + self.bs > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        out = self.perm[self.pos:self.pos + self.bs].numpy()
        self.pos += self.bs
        return out

    def state(self) -> dict:
        return {"perm": self.perm, "pos": self.pos}

    def load(self, s: dict) -> None:
        self.perm, self.pos = s["perm"], int(s["pos"])


@dataclass
class ProtectData:
    """What is protected: the clean image store, the unit of every pair, the caption tokens and the trigger
    vocabulary (token ids allowed in published text)."""
    images: RowFile
    units: Units
    captions: torch.Tensor
    vocab: torch.Tensor
    at: torch.Tensor | None = None  # per pair, the token index its trigger starts at (None: after start-of-text)


@dataclass
class Batch:
    """One batch of units in the protect pass; `features` are the noisy images' (with autograd when PGD
    follows, so its first step reuses them)."""
    units: np.ndarray
    pairs: np.ndarray
    x: torch.Tensor
    x_adv: torch.Tensor
    captions: torch.Tensor
    trigger: torch.Tensor
    at: torch.Tensor | None = None
    features: torch.Tensor | None = None
    noise: torch.Tensor | None = None  # low-frequency noise: what is stored (before the range clamp), else None


@contextlib.contextmanager
def frozen(model):
    """Eval mode without parameter gradients: the protect pass differentiates inputs only."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


class Protector:
    def __init__(self, cfg: ProtectConfig, encoder: Encoder | list[Encoder], data: ProtectData, workdir: Path,
                 seed: int, progress: bool = False, commit_seconds: float = 60.0):
        """`encoder`: the surrogate, or a list of surrogates protected against at once (their losses averaged;
        noise-only methods: HotFlip's candidates are one model's). `commit_seconds`: how much of a pass a kill
        may cost at most (a marker commits the batches done every so often)."""
        cfg.validate()
        members = encoder if isinstance(encoder, list) else [encoder]
        if len(members) > 1 and cfg.kind.trigger == "hotflip":
            raise ConfigError(f"method: an ensemble of surrogates is for image noise alone, not kind {cfg.method}, "
                              "whose HotFlip searches one model's vocabulary")
        encoder = members[0] if len(members) == 1 else EnsembleEncoder(members)
        self.progress, self.bar = progress, tqdm(disable=True)
        self.cfg, self.encoder, self.model, self.data = cfg, encoder, encoder.model, data
        self.members = [m.model for m in members]
        self.images, self.units, self.captions = data.images, data.units, data.captions
        self.vocab, self.device, self.workdir = data.vocab.to(encoder.device), encoder.device, Path(workdir)
        self.gen = torch.Generator().manual_seed(seed)
        self.res = self.images.shape[1:]
        self.opts = [make_optimizer(m.model, cfg.lr, cfg.weight_decay, (0.9, 0.999), 1e-8)  # reference betas
                     for m in members]
        self.trainers = [ContrastiveTrainer(m, opt) for m, opt in zip(members, self.opts)]
        self.stream = BatchStream(len(self.captions), cfg.batch_size, self.gen)
        self.eot = ScraperTransforms(cfg.eot)
        encoder.bound_text_length(data.captions, cfg.trigger_len)  # no host read of device tokens in a pass
        self.expand = block_expand(cfg.noise_block, self.res[:2])
        k = cfg.trigger_len
        self.triggers = data.vocab[torch.randint(len(data.vocab), (len(self.units), k), generator=self.gen)]
        # per unit colour transform (gain, offset per channel, 1/255), or None without the colour branch
        self.colour = torch.zeros(len(self.units), 2, 3) if cfg.colour_eps else None
        self.round, self.history = 0, []
        self.noise_path = self.workdir / ProtectionDir.NOISE  # placed into the protection as it is
        self.commit_seconds, self.seq = commit_seconds, 0
        # the pass in progress: its unit order, the next batch, its losses so far (None: the round's training is next)
        self.order, self.batch, self.stats, self.surrogate_loss = None, None, None, float("nan")

    def logit_scale(self) -> torch.Tensor:
        """The surrogate's temperature, or each member's as [M, 1, 1] (to go with stacked features)."""
        scales = [m.logit_scale.exp().detach() for m in self.members]
        return scales[0] if len(scales) == 1 else torch.stack(scales).view(-1, 1, 1)

    # -- checkpointing ---------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.workdir / "state.pt"

    @property
    def marker_path(self) -> Path:
        return self.workdir / "marker.pt"

    def _progress(self) -> dict:
        return {"seq": self.seq, "round": self.round, "batch": self.batch, "order": self.order, "stats": self.stats,
                "surrogate_loss": self.surrogate_loss, "rng": self.gen.get_state(), "stream": self.stream.state(),
                "triggers": self.triggers, "colour": self.colour, "history": self.history}

    def _load_progress(self, p: dict) -> None:
        self.seq, self.round, self.batch, self.order = int(p["seq"]), int(p["round"]), p["batch"], p["order"]
        self.stats, self.surrogate_loss, self.history = p["stats"], p["surrogate_loss"], list(p["history"])
        self.gen.set_state(p["rng"])
        self.stream.load(p["stream"])
        self.triggers, self.colour = p["triggers"], p["colour"]

    def resume(self) -> bool:
        """The newest commit: the surrogate from `state.pt`, the rest from whichever of it and `marker.pt` came
        later. Rows a killed pass overwrote after that are put back by `run` from the undo log."""
        if not self.state_path.exists():
            return False
        s = torch.load(self.state_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(s["model"])
        for opt, state in zip(self.opts, s["optimizers"]):
            opt.load_state_dict(state)
        m = torch.load(self.marker_path, map_location="cpu", weights_only=True) if self.marker_path.exists() else None
        self._load_progress(m if m is not None and m["seq"] > s["seq"] else s)
        log.info("resumed from %s at round %d%s", self.workdir, self.round,
                 "" if self.batch is None else f", batch {self.batch}")
        return True

    def _commit(self, undo: UndoLog, surrogate: bool) -> None:
        """Commit the progress (with the surrogate: `state.pt`, once a round; else a marker), then empty the
        undo log: the rows it holds belong to batches the commit now covers."""
        undo.noise.flush()  # the rows the commit covers reach the disk before it does
        self.seq += 1
        if surrogate:
            # streamed through a Python file, never held in memory whole (RN50 with AdamW: 1.2 GB); a full disk
            # then surfaces as torch's writer error chained to the OSError, which the job runner names
            state = {"model": self.model.state_dict(), "optimizers": [o.state_dict() for o in self.opts],
                     **self._progress()}
            with atomic_path(self.state_path) as tmp, open(tmp, "wb") as f:
                torch.save(state, f)
            self.marker_path.unlink(missing_ok=True)
        else:
            with atomic_path(self.marker_path) as tmp, open(tmp, "wb") as f:
                torch.save(self._progress(), f)
        undo.clear()  # a kill before this leaves a log of the previous commit, which a resume discards
        undo.follow(self.seq)
        write_progress(self.workdir / "progress.json", {"rounds_done": self.round, "of": self.cfg.rounds,
                                                        "pass_batches_done": self.batch})

    # -- data ------------------------------------------------------------------------------------------
    def noisy_pixels(self, pairs: np.ndarray, noise_rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean pixels of the pairs' images, the given int8 NHWC noise rows) as float NCHW on the device, both
        exact integers; they travel as uint8/int8 and become floats there."""
        x = self.encoder.pixels(torch.from_numpy(self.images[self.units.pair_image_row[pairs]]))
        d = torch.from_numpy(noise_rows).to(self.device, non_blocking=True)
        return x, d.permute(0, 3, 1, 2).float()

    @staticmethod
    def noise_rows(d: torch.Tensor) -> np.ndarray:
        """Float NCHW noise (whole units of 1/255) back to the int8 NHWC rows the noise file stores."""
        return d.round().to(torch.int8).permute(0, 2, 3, 1).cpu().numpy()

    def at(self, pairs: np.ndarray, device: torch.device | None = None) -> torch.Tensor | None:
        """Where the pairs' triggers start among their tokens (None: after start-of-text), on `device`."""
        return None if self.data.at is None else self.data.at[torch.as_tensor(pairs)].to(device or self.device)

    def tokens(self, pairs: np.ndarray, units: np.ndarray) -> torch.Tensor:
        """On the host: the encoder reads their length there, then moves them."""
        return insert_trigger(self.captions[torch.as_tensor(pairs)], self.triggers[torch.as_tensor(units)],
                              self.at(pairs, torch.device("cpu")))

    # -- the loop --------------------------------------------------------------------------------------
    def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.resume():
            for log_file in self.workdir.glob("undo*.log"):  # no commit yet: nothing a log could belong to
                log_file.unlink()
            RowFile.create(self.noise_path, (len(self.units),) + self.res, np.int8).close()
        noise = RowFile(self.noise_path, writable=True)
        undo = UndoLog(self.workdir, noise, self.seq)
        restored = undo.restore()  # rows a killed pass overwrote after its last commit
        if restored:
            log.info("put back the rows of %d batches a killed pass had overwritten", restored)
        t0, start_round = time.time(), self.round
        items = len(self.units.images) if self.units.granularity == "cluster" else len(self.units)
        per_pass = len(self._batches(np.arange(items)))
        self.bar = tqdm(total=(self.cfg.rounds - self.round) * (self.cfg.surrogate_steps + per_pass)
                        - (self.cfg.surrogate_steps + (self.batch or 0) if self.batch is not None else 0),
                        unit="batch", disable=not self.progress, dynamic_ncols=True)
        try:
            while self.round < self.cfg.rounds:
                self.bar.set_description(f"{self.cfg.method} round {self.round + 1}/{self.cfg.rounds}")
                if self.batch is None:  # the round's training, then its pass's order: committed with the surrogate
                    self.surrogate_loss = self._train_surrogate(noise)
                    self.order = torch.randperm(items, generator=self.gen)
                    self.batch, self.stats = 0, {"pgd_loss": [], "flip_before": [], "flip_after": []}
                    self._commit(undo, surrogate=True)
                self._protect_pass(noise, undo, flip=self.round < self.cfg.hotflip_rounds)
                self.history.append({"round": self.round + 1, "surrogate_loss": self.surrogate_loss,
                                     **{k: mean_loss(v) for k, v in self.stats.items()}})
                self.round, self.batch, self.order, self.stats = self.round + 1, None, None, None
                self._commit(undo, surrogate=False)
                done = self.round - start_round
                rate = (time.time() - t0) / done
                h = self.history[-1]
                flip = ("no HotFlip" if h["flip_before"] != h["flip_before"]  # NaN: no trigger search this round
                        else f"flip {h['flip_before']:.4f} -> {h['flip_after']:.4f}")
                log.info("round %d/%d: surrogate loss %.4f, pgd loss %.4f, %s | %.1fs/round, ETA %.0fs, peak RSS "
                         "%.0f MiB", self.round, self.cfg.rounds, h["surrogate_loss"], h["pgd_loss"], flip, rate,
                         rate * (self.cfg.rounds - self.round), peak_rss_mib())
        finally:
            noise.close()
            self.bar.close()

    def _train_surrogate(self, noise: RowFile) -> float:
        losses = []
        for _ in range(self.cfg.surrogate_steps):
            pairs = self.stream.next()
            units = self.units.unit_of_pair[pairs]
            x, d = self.noisy_pixels(pairs, noise[units])
            x_adv = self.eot.apply((x + d).clamp(0, 255), self.eot.draw(1, self.gen)[0], self.gen)
            tokens = self.encoder.trim(self.tokens(pairs, units))
            losses.extend(trainer.step(x_adv, tokens) for trainer in self.trainers)  # each member, same batch
            self.bar.update(1)
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)  # the pass needs no parameter gradients: free them (RN50: 400 MB)
        return mean_loss(losses)

    def _protect_pass(self, noise: RowFile, undo: UndoLog, flip: bool) -> None:
        """Per batch from `self.batch` on: flip its triggers, minimise its noise, record its losses; each batch's
        rows are logged, then rewritten in place, and markers commit the batches done as they go."""
        if self.units.granularity == "cluster":
            return self._cluster_pass(noise, undo)
        flip = flip and self.cfg.kind.trigger == "hotflip" and self.cfg.trigger_len > 0
        batches, last_commit = self._batches(self.order.numpy()), time.time()
        with frozen(self.model), ReadAhead(noise, batches, self.batch) as ahead:
            for j in range(self.batch, len(batches)):
                units, rows = batches[j], ahead.rows(j)
                b = self._batch(units, rows, with_features=flip)
                if flip:
                    before, after = self._flip(b)
                    self.stats["flip_before"].append(before)
                    self.stats["flip_after"].append(after)
                if self.cfg.pgd_steps > 0:
                    self.stats["pgd_loss"].append(self._pgd(b))
                self._write(noise, undo, j, units, rows,
                            self.noise_rows(b.x_adv - b.x if b.noise is None else b.noise))
                last_commit = self._maybe_commit(undo, j + 1, len(batches), last_commit)

    def _cluster_pass(self, noise: RowFile, undo: UndoLog) -> None:
        """Cluster units: every image once, in shuffled batches; the images of a batch share their clusters'
        noises, and a noise a batch already moved this pass is read as moved (the file is rewritten in place)."""
        batches, last_commit = self._batches(self.order.numpy()), time.time()
        with frozen(self.model):
            for j in range(self.batch, len(batches)):
                pairs = self.units.pick_image_pairs(batches[j], self.gen)
                units, index = np.unique(self.units.unit_of_pair[pairs], return_inverse=True)
                current = noise[units]
                x, d = self.noisy_pixels(pairs, current)
                captions = self.captions[torch.as_tensor(pairs)].to(self.device)
                perms, view = self._pgd_draws(len(pairs))
                text_features = self._step_texts(perms, lambda p, c=captions: c if p is None else c[p])
                d, loss = shared_noise_pgd(self.encoder, x, block_reduce(d, self.cfg.noise_block),
                                           torch.as_tensor(index, device=self.device), text_features, self.cfg.eps,
                                           self.cfg.step, self.cfg.pgd_steps, self.logit_scale(),
                                           view, self.expand)
                self.stats["pgd_loss"].append(loss)
                self._write(noise, undo, j, units, current,
                            self.noise_rows(d if self.expand is None else self.expand(d)))
                last_commit = self._maybe_commit(undo, j + 1, len(batches), last_commit)

    def _write(self, noise: RowFile, undo: UndoLog, j: int, units: np.ndarray, old: np.ndarray,
               new: np.ndarray) -> None:
        """The batch's old rows go to the undo log before its new rows overwrite them."""
        undo.append(j, units, old)
        noise.write(units, new)
        self.bar.update(1)

    def _maybe_commit(self, undo: UndoLog, next_batch: int, n: int, last: float) -> float:
        """A marker once `commit_seconds` have passed since the last or the undo log reaches its limit (the
        pass's end commits with its round)."""
        self.batch = next_batch
        if next_batch < n and (time.time() - last >= self.commit_seconds or undo.bytes >= undo.limit):
            self._commit(undo, surrogate=False)
            return time.time()
        return last

    def _batches(self, order: np.ndarray) -> list[np.ndarray]:
        """Every index of the pass's order once, in batches; a lone tail index is folded into the last full
        batch (a contrastive loss needs a partner)."""
        bs = min(self.cfg.batch_size, len(order))
        out = [order[s:s + bs] for s in range(0, len(order), bs)]
        return [order[-bs:] if len(batch) < 2 else batch for batch in out]

    def _pgd_draws(self, n: int):
        """Per PGD step: the caption permutation (None without shuffling) and the EOT transform, as a view."""
        perms = [torch.randperm(n, generator=self.gen).to(self.device) if self.cfg.shuffle else None
                 for _ in range(self.cfg.pgd_steps)]
        if not self.eot:
            return perms, None
        transforms = self.eot.draw(self.cfg.pgd_steps, self.gen)
        return perms, lambda x, t: self.eot.apply(x, transforms[t], self.gen)

    def _step_texts(self, perms: list, captions: Callable[[torch.Tensor | None], torch.Tensor]
                    ) -> Callable[[int], torch.Tensor]:
        """Text features for PGD step t, from the step's caption permutation. Without shuffling every step sees
        the same captions (the surrogate is frozen and the trigger fixed during PGD): they are encoded once."""
        fixed: list[torch.Tensor] = []

        @torch.no_grad()
        def text_features(t: int) -> torch.Tensor:
            if perms[t] is not None:
                return self.encoder.text(captions(perms[t]))
            if not fixed:
                fixed.append(self.encoder.text(captions(None)))
            return fixed[0]

        return text_features

    def _batch(self, units: np.ndarray, rows: np.ndarray, with_features: bool) -> Batch:
        pairs = self.units.pick_pairs(units, self.gen)
        x, d = self.noisy_pixels(pairs, rows)
        b = Batch(units, pairs, x, (x + d).clamp(0, 255), self.captions[torch.as_tensor(pairs)].to(self.device),
                  self.triggers[torch.as_tensor(units)].to(self.device), self.at(pairs),
                  noise=None if self.expand is None and self.colour is None else d)
        if with_features:
            grad = self.cfg.pgd_steps > 0
            b.x_adv.requires_grad_(grad)
            with torch.set_grad_enabled(grad):
                b.features = self.encoder.image(b.x_adv)
        return b

    def _flip(self, b: Batch) -> tuple[float, float]:
        b.trigger, before, after = hotflip(self.encoder, b.features.detach(), b.captions, b.trigger, self.vocab,
                                           self.cfg.candidates, self.logit_scale(), b.at)
        self.triggers[torch.as_tensor(b.units)] = b.trigger.cpu()
        return before, after

    def _pgd(self, b: Batch) -> float:
        """Error-minimising PGD against the batch's texts: each step pairs every image with a shuffled
        caption that still carries the image's own trigger, so the noise cannot learn the caption."""
        perms, view = self._pgd_draws(len(b.units))

        def captions(perm: torch.Tensor | None) -> torch.Tensor:
            if perm is None:
                return insert_trigger(b.captions, b.trigger, b.at)
            at = None if b.at is None else b.at[perm]  # a caption's trigger goes where its words allow
            return insert_trigger(b.captions[perm], b.trigger, at)

        text_features = self._step_texts(perms, captions)

        if self.colour is not None:  # colour transform + spatial noise; the stored noise holds both, unclamped
            colour = self.colour[torch.as_tensor(b.units)].to(self.device)
            delta = b.noise - colour_shift(b.x, colour)
            delta, colour, loss = colour_noise_pgd(
                self.encoder, b.x, block_reduce(delta, self.cfg.noise_block), colour, text_features, self.cfg.eps,
                self.cfg.colour_eps, self.cfg.step, self.cfg.pgd_steps, self.logit_scale(), view,
                self.expand)
            self.colour[torch.as_tensor(b.units)] = colour.cpu()
            b.noise = colour_shift(b.x, colour) + (delta if self.expand is None else self.expand(delta))
            b.x_adv, b.features = (b.x + b.noise).clamp(0, 255), None
            return loss
        if self.expand is not None:  # low-frequency noise: its squares move together, kept before the clamp
            low, loss = shared_noise_pgd(self.encoder, b.x, block_reduce(b.noise, self.cfg.noise_block),
                                         torch.arange(len(b.units), device=self.device),
                                         text_features, self.cfg.eps, self.cfg.step, self.cfg.pgd_steps,
                                         self.logit_scale(), view, self.expand)
            b.noise = self.expand(low)
            b.x_adv, b.features = (b.x + b.noise).clamp(0, 255), None
            return loss
        delta, loss = error_minimizing_pgd(self.encoder, b.x, b.x_adv, text_features, self.cfg.eps, self.cfg.step,
                                           self.cfg.pgd_steps, self.logit_scale(), b.features,
                                           view)
        b.x_adv, b.features = b.x + delta, None
        return loss
