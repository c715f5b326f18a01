import numpy as np
import pytest
import torch

from unlearnable.clip.models import ModelSpec, create_model, tokenizer
from unlearnable.clip.text import tokenize
from unlearnable.clip.train import PairBatches, TrainConfig, param_groups, train_clip, warmup_cosine
from unlearnable.data.image_store import open_image_store
from unlearnable.provenance import seed_everything


@pytest.fixture(scope="module")
def pairs(shapes_store):
    df, store = shapes_store
    train = df[df.split == "train"]
    return open_image_store(store), train["image_index"].to_numpy(), tokenize(tokenizer("tiny-vit"),
                                                                             train["caption"].tolist())


def _run(pairs, epochs=4, seed=0):
    g = seed_everything(seed)
    model = create_model(ModelSpec("tiny-vit"))
    data = PairBatches(*pairs)
    hist = train_clip(model, data, TrainConfig(epochs=epochs, batch_size=32, lr=2e-3), torch.device("cpu"), g)
    return model, hist


def test_loss_falls_and_rerun_is_identical(pairs):
    model, hist = _run(pairs)
    assert hist[-1]["loss"] < hist[0]["loss"] - 0.3
    assert hist[-1]["lr"] == 0.0  # cosine completed
    model2, hist2 = _run(pairs)
    assert [h["loss"] for h in hist] == [h["loss"] for h in hist2]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def test_schedule_warms_up_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=20, warmup_steps=5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_no_decay_groups():
    model = create_model(ModelSpec("tiny-vit"))
    no_decay, decay = param_groups(model, 0.2)
    names = {id(p): n for n, p in model.named_parameters()}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.2
    assert any(names[id(p)] == "logit_scale" for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"])
    assert len(no_decay["params"]) + len(decay["params"]) == len(list(model.parameters()))


def test_logit_scale_is_clamped(pairs):
    g = seed_everything(0)
    model = create_model(ModelSpec("tiny-vit"))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    data = PairBatches(*pairs)
    train_clip(model, data, TrainConfig(epochs=1, batch_size=32, max_logit_scale=50), torch.device("cpu"), g)
    assert float(model.logit_scale.detach().exp()) <= 50 + 1e-4


def test_batches_gather_the_right_images(pairs):
    images, rows, tokens = pairs
    data = PairBatches(images, rows, tokens)
    idx = np.array([7, 3, 3, 0])
    assert torch.equal(data.pixels(idx), torch.from_numpy(np.asarray(images[rows[idx]])))
    assert torch.equal(data.batch(idx)[1], tokens[idx])


def test_augmentation_crops_flips_and_is_seeded():
    from unlearnable.clip.train import random_resized_crop_flip

    x = torch.arange(8 * 32 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(1, 8, 32, 3)
    x = x.repeat(64, 1, 1, 1)
    a = random_resized_crop_flip(x, torch.Generator().manual_seed(0), 0.5)
    b = random_resized_crop_flip(x, torch.Generator().manual_seed(0), 0.5)
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, x)
    full = random_resized_crop_flip(x, torch.Generator().manual_seed(1), 1.0)  # whole image: only flips remain
    flipped = sum(torch.equal(f, x[0].flip(1)) for f in full)
    kept = sum(torch.equal(f, x[0]) for f in full)
    assert kept + flipped >= 60 and 16 < flipped < 48  # a fair coin per image


KILLED_RUN = """
import logging, os, signal, sys, threading, time
logging.basicConfig(level=logging.INFO)
import torch
from unlearnable.clip.models import ModelSpec, create_model, save_weights, tokenizer
from unlearnable.clip.text import tokenize
from unlearnable.clip.train import PairBatches, TrainConfig, train_clip
from unlearnable.data.image_store import open_image_store
from unlearnable.provenance import seed_everything
import numpy as np
store, rows, caps, ckpt, out, kill = sys.argv[1:7]
if kill == "1":  # SIGKILL, as a scheduler's wall time does, as soon as the first epoch is committed
    def killer():
        while not os.path.exists(ckpt):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=killer, daemon=True).start()
g = seed_everything(0)
model = create_model(ModelSpec("tiny-vit"))
data = PairBatches(open_image_store(store), np.load(rows), torch.load(caps, weights_only=True))
train_clip(model, data, TrainConfig(epochs=3, batch_size=32, lr=2e-3), torch.device("cpu"), g, checkpoint=ckpt)
save_weights(model, out)
"""


def test_training_killed_mid_run_resumes_after_its_last_epoch_bit_identical(shapes_store, tmp_path):
    import subprocess
    import sys

    from safetensors.torch import load_file

    df, store = shapes_store
    train = df[df.split == "train"]
    np.save(tmp_path / "rows.npy", train["image_index"].to_numpy())
    torch.save(tokenize(tokenizer("tiny-vit"), train["caption"].tolist()), tmp_path / "caps.pt")
    args = [sys.executable, "-c", KILLED_RUN, str(store), str(tmp_path / "rows.npy"), str(tmp_path / "caps.pt")]
    ckpt = tmp_path / "state.pt"
    killed = subprocess.run(args + [str(ckpt), str(tmp_path / "never.safetensors"), "1"], capture_output=True)
    assert killed.returncode == -9 and ckpt.exists() and not (tmp_path / "never.safetensors").exists()
    resumed = subprocess.run(args + [str(ckpt), str(tmp_path / "resumed.safetensors"), "0"], capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and "after epoch 1/3" in resumed.stderr
    whole = subprocess.run(args + [str(tmp_path / "other.pt"), str(tmp_path / "whole.safetensors"), "0"],
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a, b = load_file(str(tmp_path / "resumed.safetensors")), load_file(str(tmp_path / "whole.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_of_other_settings_is_not_resumed(pairs, tmp_path):
    g = seed_everything(0)
    model = create_model(ModelSpec("tiny-vit"))
    train_clip(model, PairBatches(*pairs), TrainConfig(epochs=2, batch_size=32, lr=2e-3), torch.device("cpu"), g,
               checkpoint=tmp_path / "state.pt")
    assert (tmp_path / "state.pt").exists()  # the first epoch's, left for the caller to remove
    other, hist = _run(pairs, epochs=2)  # the same run without a checkpoint
    g = seed_everything(0)
    again = create_model(ModelSpec("tiny-vit"))
    hist2 = train_clip(again, PairBatches(*pairs), TrainConfig(epochs=2, batch_size=32, lr=1e-3),
                       torch.device("cpu"), g, checkpoint=tmp_path / "state.pt")  # another lr: start over
    assert len(hist2) == 2 and hist2[0]["loss"] != hist[0]["loss"]
