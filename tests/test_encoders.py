"""The one place pixels and tokens become features: exact slicing of the text tower, device-side
normalisation, batch gathering with workers."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearnable.clip.encoders import Encoder, encode_text, text_length
from unlearnable.clip.models import ModelSpec, create_model, tokenizer
from unlearnable.clip.text import insert_trigger, tokenize
from unlearnable.clip.train import PairBatches, batch_loader

CAPTIONS = ["a dog runs on the grass", "two people ride bicycles down a long hill near the sea at sunset",
            "red", "a child in a pink dress is climbing up a set of stairs in an entry way"]


@pytest.mark.parametrize("arch", ["tiny-vit", "tiny-rn", "RN50", "ViT-B-32"])
def test_text_tower_on_the_first_positions_equals_the_full_forward(arch):
    torch.manual_seed(0)
    model = create_model(ModelSpec(arch)).eval()
    tokens = tokenize(tokenizer(arch), CAPTIONS * 4)
    tokens = insert_trigger(tokens, torch.full((len(tokens), 3), 1000))  # as MEM's texts are
    seen = []
    hook = model.transformer.register_forward_pre_hook(lambda _m, args, kw: seen.append(args[0].shape[1]),
                                                       with_kwargs=True)
    with torch.no_grad():
        sliced = encode_text(model, tokens)
    hook.remove()
    with torch.no_grad():
        full = model.encode_text(tokens)  # open_clip's own forward, all context positions
    n = text_length(model, tokens)
    assert seen == [n] and n < tokens.shape[1]  # it really ran on fewer positions
    assert n == int((tokens != 0).sum(1).max())  # through the longest text's end-of-text token
    torch.testing.assert_close(sliced, full, rtol=1e-5, atol=1e-5)


def test_text_gradients_flow_through_the_sliced_tower():
    torch.manual_seed(0)
    model = create_model(ModelSpec("tiny-vit"))
    tokens = tokenize(tokenizer("tiny-vit"), CAPTIONS)
    encode_text(model, tokens).sum().backward()
    assert model.positional_embedding.grad[:text_length(model, tokens)].abs().sum() > 0
    assert model.positional_embedding.grad[text_length(model, tokens):].abs().sum() == 0  # never used


def test_input_is_normalised_the_same_from_uint8_and_from_float_pixels():
    model = create_model(ModelSpec("tiny-rn"))
    enc = Encoder(model, torch.device("cpu"))
    u8 = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    want = (u8.permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(enc.input(u8), want)
    torch.testing.assert_close(enc.input(u8.permute(0, 3, 1, 2).float()), want)
    with torch.no_grad():
        torch.testing.assert_close(enc.image(u8), F.normalize(model.encode_image(want), dim=-1))


def test_workers_gather_the_same_batches_in_the_same_order(shapes_store):
    df, store = shapes_store
    from unlearnable.data.image_store import open_image_store

    data = PairBatches(open_image_store(store), df["image_index"].to_numpy(),
                       torch.arange(len(df)).view(-1, 1))
    order = data.epoch(16, torch.Generator().manual_seed(0))
    inline = list(batch_loader(data, order, torch.device("cpu"), workers=0))
    parallel = list(batch_loader(data, order, torch.device("cpu"), workers=2))
    assert len(inline) == len(parallel) == len(order)
    for (xa, ta), (xb, tb), idx in zip(inline, parallel, order):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
        assert torch.equal(ta.view(-1), torch.as_tensor(idx))
        assert np.array_equal(xa.numpy(), np.load(store, mmap_mode="r")[df["image_index"].to_numpy()[idx]])


@pytest.mark.parametrize("precision, dtype", [("auto", torch.float32), ("fp32", torch.float32),
                                              ("bf16", torch.bfloat16)])
def test_precision_bf16_runs_autocast_on_the_cpu(precision, dtype):
    """`precision: bf16` is the CPU switch that runs the GPU's numerics: the towers' matmuls run in bf16 (seen
    inside them), features come back fp32, and a training step's gradients reach the weights; `auto` keeps
    the CPU in fp32."""
    from unlearnable.clip.train import ContrastiveTrainer, make_optimizer

    torch.manual_seed(0)
    model = create_model(ModelSpec("tiny-rn"))
    enc = Encoder(model, torch.device("cpu"), precision)
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _a, out: seen.append(out.dtype))
             for m in (model.visual.conv1, model.transformer.resblocks[0].mlp.c_fc)]
    tokens = tokenize(tokenizer("tiny-rn"), CAPTIONS)
    images = torch.randint(0, 256, (len(CAPTIONS), 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert enc.image(images).dtype == enc.text(tokens).dtype == torch.float32
    assert seen == [dtype, dtype]
    trainer = ContrastiveTrainer(enc, make_optimizer(model, 1e-3, 0.2))
    trainer.step(images, enc.trim(tokens))
    for h in hooks:
        h.remove()
    assert set(seen[2:]) == {dtype} and model.visual.conv1.weight.grad.abs().sum() > 0
