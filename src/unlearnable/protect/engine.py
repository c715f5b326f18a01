"""The MEM loop (and EM, its image-only special case), resumable round by round.

Each round: (1) train the surrogate CLIP for `surrogate_steps` on the currently protected data;
(2) one pass over every unit: HotFlip on its trigger (first `hotflip_rounds` rounds), then error-minimising
PGD on its noise with caption shuffling. Noise is read from the last committed round's file and written to
this round's file, so a job killed mid-round resumes from the last commit and ends bit-identical to an
uninterrupted run (on the CPU). The surrogate, its optimiser, the RNG and the data stream are checkpointed
with every commit.
"""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..image_store import to_model_input
from ..rowfile import RowFile
from ..text import insert_trigger
from ..train import ContrastiveTrainer, make_optimizer
from .config import ProtectConfig
from .hotflip import hotflip
from .loss import clip_loss
from .pgd import error_minimizing_pgd
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


class Protector:
    def __init__(self, cfg: ProtectConfig, model, images: RowFile, units: Units, captions: torch.Tensor,
                 vocab: torch.Tensor, mean, std, device: torch.device, workdir: Path, seed: int,
                 progress: bool = False):
        cfg.validate()
        self.progress, self.bar = progress, tqdm(disable=True)
        self.cfg, self.model, self.images, self.units = cfg, model.to(device), images, units
        self.captions, self.vocab, self.mean, self.std = captions, vocab.to(device), mean, std
        self.device, self.workdir = device, Path(workdir)
        self.gen = torch.Generator().manual_seed(seed)
        self.res = images.shape[1:]
        self.opt = make_optimizer(self.model, cfg.lr, cfg.weight_decay, (0.9, 0.999), 1e-8)  # reference betas
        self.trainer = ContrastiveTrainer(self.model, self.opt, None, device)
        self.stream = BatchStream(len(captions), cfg.batch_size, self.gen)
        k = cfg.trigger_len
        self.triggers = vocab[torch.randint(len(vocab), (len(units), k), generator=self.gen)]
        self.round, self.history = 0, []
        self.noise_path = self.workdir / "noise_init.npy"

    # -- checkpointing ---------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.workdir / "state.pt"

    def resume(self) -> bool:
        if not self.state_path.exists():
            return False
        s = torch.load(self.state_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.gen.set_state(s["rng"])
        self.stream.load(s["stream"])
        self.triggers, self.round, self.history = s["triggers"], int(s["round"]), list(s["history"])
        self.noise_path = self.workdir / s["noise_file"]
        log.info("resumed from %s at round %d", self.state_path, self.round)
        return True

    def _commit(self, noise_file: Path) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "rng": self.gen.get_state(),
                 "stream": self.stream.state(), "triggers": self.triggers, "round": self.round,
                 "history": self.history, "noise_file": noise_file.name}
        buf = io.BytesIO()  # serialise in memory: a full disk then fails as a plain OSError naming the file
        torch.save(state, buf)
        with atomic_path(self.state_path) as tmp, open(tmp, "wb") as f:
            f.write(buf.getbuffer())
        old, self.noise_path = self.noise_path, noise_file
        if old != noise_file and old.exists():
            old.unlink()

    # -- data ------------------------------------------------------------------------------------------
    def noisy_pixels(self, units: np.ndarray, noise: RowFile) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean pixels, committed noise) as float NCHW on the device, both exact integers."""
        x = torch.from_numpy(self.images[self.units.unit_image_row[units]]).permute(0, 3, 1, 2).float()
        d = torch.from_numpy(noise[units]).permute(0, 3, 1, 2).float()
        return x.to(self.device), d.to(self.device)

    def tokens(self, pairs: np.ndarray, units: np.ndarray) -> torch.Tensor:
        return insert_trigger(self.captions[torch.as_tensor(pairs)], self.triggers[torch.as_tensor(units)]
                              ).to(self.device)

    # -- the loop --------------------------------------------------------------------------------------
    def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.resume():
            RowFile.create(self.noise_path, (len(self.units),) + self.res, np.int8).close()
        t0, start_round = time.time(), self.round
        steps = self.cfg.surrogate_steps + -(-len(self.units) // min(self.cfg.batch_size, len(self.units)))
        self.bar = tqdm(total=(self.cfg.rounds - self.round) * steps, unit="batch", disable=not self.progress,
                        desc=f"{self.cfg.method} round {self.round + 1}/{self.cfg.rounds}", dynamic_ncols=True)
        while self.round < self.cfg.rounds:
            self.bar.set_description(f"{self.cfg.method} round {self.round + 1}/{self.cfg.rounds}")
            r = self.round
            noise = RowFile(self.noise_path)
            surrogate_loss = self._train_surrogate(noise)
            out_file = self.workdir / f"noise_r{r:03d}.npy"
            new_noise = RowFile.create(out_file, (len(self.units),) + self.res, np.int8)
            pass_stats = self._protect_pass(noise, new_noise, flip=r < self.cfg.hotflip_rounds)
            new_noise.flush()
            new_noise.close()
            noise.close()
            self.history.append({"round": r + 1, "surrogate_loss": surrogate_loss, **pass_stats})
            self.round = r + 1
            self._commit(out_file)
            done = self.round - start_round
            rate = (time.time() - t0) / done
            log.info("round %d/%d: surrogate loss %.4f, pgd loss %.4f, flip %.4f -> %.4f | %.1fs/round, ETA %.0fs",
                     self.round, self.cfg.rounds, surrogate_loss, pass_stats["pgd_loss"],
                     pass_stats["flip_before"], pass_stats["flip_after"], rate, rate * (self.cfg.rounds - self.round))
        self.bar.close()

    def _train_surrogate(self, noise: RowFile) -> float:
        losses = []
        for _ in range(self.cfg.surrogate_steps):
            pairs = self.stream.next()
            units = self.units.unit_of_pair[pairs]
            x, d = self.noisy_pixels(units, noise)
            img = to_model_input((x + d).clamp(0, 255), self.mean, self.std)
            losses.append(self.trainer.step(img, self.tokens(pairs, units)))
            self.bar.update(1)
        return float(np.mean(losses)) if losses else float("nan")

    def _protect_pass(self, noise: RowFile, new_noise: RowFile, flip: bool) -> dict:
        cfg, model = self.cfg, self.model
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        scale = model.logit_scale.exp().detach()
        order = torch.randperm(len(self.units), generator=self.gen).numpy()
        bs = min(cfg.batch_size, len(order))
        stats = {"pgd_loss": [], "flip_before": [], "flip_after": []}
        try:
            for s in range(0, len(order), bs):
                units = order[s:s + bs]
                if len(units) < 2:  # a contrastive loss needs a partner; fold a lone tail into the last batch
                    units = order[-bs:]
                pairs = self.units.pick_pairs(units, self.gen)
                x, d = self.noisy_pixels(units, noise)
                caps = self.captions[torch.as_tensor(pairs)].to(self.device)
                trig = self.triggers[torch.as_tensor(units)].to(self.device)
                if flip and trig.shape[1] > 0 and cfg.method == "mem":
                    with torch.no_grad():
                        img = F.normalize(model.encode_image(to_model_input((x + d).clamp(0, 255), self.mean,
                                                                             self.std)), dim=-1)
                    trig, before, after = hotflip(model, img, caps, trig, self.vocab, cfg.candidates, scale)
                    self.triggers[torch.as_tensor(units)] = trig.cpu()
                    stats["flip_before"].append(before)
                    stats["flip_after"].append(after)
                if cfg.pgd_steps > 0:
                    perms = [torch.randperm(len(units), generator=self.gen) if cfg.shuffle else None
                             for _ in range(cfg.pgd_steps)]

                    @torch.no_grad()
                    def text_features(t: int, caps=caps, trig=trig, perms=perms):
                        c = caps if perms[t] is None else caps[perms[t].to(caps.device)]
                        return F.normalize(model.encode_text(insert_trigger(c, trig)), dim=-1)

                    d = error_minimizing_pgd(model, x, d, text_features, cfg.eps, cfg.step, cfg.pgd_steps,
                                             self.mean, self.std, scale)
                    with torch.no_grad():
                        img = F.normalize(model.encode_image(to_model_input(x + d, self.mean, self.std)), dim=-1)
                        stats["pgd_loss"].append(float(clip_loss(img, text_features(0), scale)))
                new_noise.write(units, d.round().to(torch.int8).permute(0, 2, 3, 1).cpu().numpy())
                self.bar.update(1)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
        return {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}
