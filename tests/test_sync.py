"""No host-device synchronisation inside a step: the GPU's logic (Encoder(sync_free=True)) runs on the CPU
while a spy counts every host read of a tensor (item, float, int, bool, tolist, cpu, numpy) made by the
step code. A read per step makes the count grow with the number of steps, and the test fails."""
import contextlib
import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from unlearnable.clip.encoders import Encoder
from unlearnable.clip.models import ModelSpec, create_model, tokenizer
from unlearnable.clip.text import tokenize, trigger_vocabulary
from unlearnable.clip.train import ContrastiveTrainer, make_optimizer
from unlearnable.protect.hotflip import hotflip
from unlearnable.protect.pgd import colour_noise_pgd, error_minimizing_pgd, shared_noise_pgd

READS = ("item", "__float__", "__int__", "__index__", "__bool__", "tolist", "cpu", "numpy")
STEP_CODE = ("clip/encoders.py", "clip/train.py", "protect/pgd.py", "protect/hotflip.py", "protect/loss.py")


@contextlib.contextmanager
def host_reads():
    """Counts, per calling function, the host reads the library's step code makes."""
    counts, saved = Counter(), {name: getattr(torch.Tensor, name) for name in READS}

    def spying(name):
        original = saved[name]

        def spy(self, *args, **kwargs):
            code = sys._getframe(1).f_code
            trimming = sys._getframe(2).f_code.co_name == "trim"  # a host read of host tokens, by design
            if any(code.co_filename.endswith(f) for f in STEP_CODE) and not trimming:
                counts[f"{code.co_name}:{name}"] += 1
            return original(self, *args, **kwargs)
        return spy

    for name in READS:
        setattr(torch.Tensor, name, spying(name))
    try:
        yield counts
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model(ModelSpec("tiny-vit"))
    enc = Encoder(model, torch.device("cpu"), sync_free=True)
    tok = tokenizer("tiny-vit")
    caps = tokenize(tok, [f"a small red shape number {i}" for i in range(8)])
    enc.bound_text_length(caps, 3)
    x = torch.randint(0, 256, (8, 3, 32, 32), generator=torch.Generator().manual_seed(1)).float()
    return model, enc, caps, x, trigger_vocabulary(tok)


def _reads(fn, steps):
    with host_reads() as counts:
        fn(steps)
    return counts


def test_pgd_reads_nothing_back_per_step(setup):
    model, enc, caps, x, _ = setup
    for p in model.parameters():
        p.requires_grad_(False)
    scale = torch.tensor(30.0)
    with torch.no_grad():
        txt = enc.text(caps)
    pixel = lambda n: error_minimizing_pgd(enc, x, x.clone(), lambda t: txt, 8, 1, n, scale)  # noqa: E731
    shared = lambda n: shared_noise_pgd(enc, x, torch.zeros(8, 3, 4, 4), torch.arange(8), lambda t: txt, 8, 1, n,  # noqa: E731
                                        scale, expand=lambda z: z.repeat_interleave(8, 2).repeat_interleave(8, 3))
    colour = lambda n: colour_noise_pgd(enc, x, torch.zeros_like(x), torch.zeros(8, 2, 3), lambda t: txt, 4, 8, 1,  # noqa: E731
                                        n, scale)
    for fn in (pixel, shared, colour):
        assert _reads(fn, 1) == _reads(fn, 5) == Counter()
    for p in model.parameters():
        p.requires_grad_(True)


def test_hotflip_chooses_on_the_device(setup):
    model, enc, caps, x, vocab = setup
    for p in model.parameters():
        p.requires_grad_(False)
    img = F.normalize(torch.randn(8, 64, generator=torch.Generator().manual_seed(2)), dim=-1)
    few = lambda k: hotflip(enc, img, caps, vocab[torch.arange(8 * k).view(8, k) % len(vocab)], vocab, 4,  # noqa: E731
                            torch.tensor(30.0))
    assert _reads(few, 1) == _reads(few, 3) == Counter()  # positions swept without a host read
    for p in model.parameters():
        p.requires_grad_(True)


def test_training_steps_keep_their_losses_on_the_device(setup):
    model, enc, caps, x, _ = setup
    trainer = ContrastiveTrainer(enc, make_optimizer(model, 1e-4, 0.2, (0.9, 0.98), 1e-6))
    tokens = enc.trim(caps)  # the host cuts them before they move, as the training loop does

    def steps(n):
        return [trainer.step(x.to(torch.uint8).permute(0, 2, 3, 1), tokens) for _ in range(n)]

    assert _reads(steps, 1) == _reads(steps, 4) == Counter()


def test_the_spy_sees_a_per_step_read(setup):
    """The guard itself: a loss read back every step is counted once per step."""
    model, enc, caps, x, _ = setup
    trainer = ContrastiveTrainer(enc, make_optimizer(model, 1e-4, 0.2, (0.9, 0.98), 1e-6))
    original = trainer.step
    trainer.step = lambda *a: float(original(*a))  # noqa: E731  (read here, in the test: not step code)
    assert _reads(lambda n: [trainer.step(x.to(torch.uint8).permute(0, 2, 3, 1), caps) for _ in range(n)], 2) \
        == Counter()  # reads outside the library's step code are not the library's
    with host_reads() as counts:
        enc.sync_free = False
        try:
            enc.text(caps)  # the CPU path reads the length: counted
        finally:
            enc.sync_free = True
    assert counts["text_length:__int__"] == 1
