import os
import pickle
from pathlib import Path

import pytest
import torch

from unlearnable import ConfigError
from unlearnable.clip.models import ModelSpec, create_model, image_resolution, load_weights, save_weights


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name,res", [("tiny-vit", 32), ("tiny-rn", 32), ("RN50", 224), ("ViT-B-32", 224)])
def test_named_and_tiny_models_build_offline(name, res):
    model = create_model(ModelSpec(name, "none"))
    assert image_resolution(name) == res
    if name.startswith("tiny"):
        with torch.no_grad():
            img, txt, scale = model(torch.randn(2, 3, res, res), torch.randint(0, 49408, (2, 32)))
        assert img.shape == txt.shape and img.shape[0] == 2


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="no-such-model"):
        create_model(ModelSpec("no-such-model"))
    with pytest.raises(ConfigError, match="not found"):
        create_model(ModelSpec("tiny-vit", "/nonexistent/weights.safetensors"))


def test_local_weights_safetensors_and_state_dict(tmp_path):
    torch.manual_seed(0)
    src = create_model(ModelSpec("tiny-vit"))
    save_weights(src, tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pt")
    torch.manual_seed(1)
    fresh = create_model(ModelSpec("tiny-vit"))
    assert not _same(src, fresh)
    assert _same(src, create_model(ModelSpec("tiny-vit", str(tmp_path / "w.safetensors"))))
    assert _same(src, create_model(ModelSpec("tiny-vit", str(tmp_path / "w.pt"))))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_untrusted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    with pytest.raises(ConfigError, match="not a loadable weights file"):
        load_weights(create_model(ModelSpec("tiny-vit")), path)


def test_mismatched_weights_are_named(tmp_path):
    save_weights(create_model(ModelSpec("tiny-rn")), tmp_path / "rn.safetensors")
    with pytest.raises(ConfigError, match="do not match"):
        create_model(ModelSpec("tiny-vit", str(tmp_path / "rn.safetensors")))


def test_concurrent_jobs_claim_different_gpus(tmp_path):
    """Each process gets a GPU index no other process holds (the lock is released when it exits)."""
    import subprocess
    import sys

    done = tmp_path / "done"
    code = ("import os, time; from unlearnable.provenance import claim_gpu; "
            f"print(claim_gpu(3, {str(tmp_path)!r}), flush=True)\n"
            f"while not os.path.exists({str(done)!r}): time.sleep(0.05)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    got = sorted(int(p.stdout.readline()) for p in procs)  # all four hold (or share) a GPU at this point
    done.touch()
    for p in procs:
        p.wait()
    assert got == [0, 0, 1, 2]  # three GPUs, four jobs: the fourth shares GPU 0
    after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert after.stdout.strip() == "0"


def test_every_shipped_architecture_shares_one_tokenizer():
    """Defended folders are made once for every victim with one tokenizer (jobs.defend_job): that holds only
    while every architecture the configs name tokenizes text the same way."""
    import re
    from pathlib import Path

    from unlearnable.clip.models import tokenizer

    repo = Path(__file__).resolve().parents[1]
    archs = set()
    for cfg in [repo / "config" / "config.yaml", *sorted((repo / "config" / "grids").glob("*.yaml"))]:
        archs |= set(re.findall(r"arch:\s*([\w.-]+)", cfg.read_text()))
    assert {"RN50", "tiny-vit", "tiny-rn"} <= archs
    text = ["a red circle, top-left; 3 blue squares!", "Ünïcode and CAPS and numbers 12345"]
    want = [tokenizer("RN50").encode(t) for t in text]  # the BPE token ids, before the context length pads
    for arch in sorted(archs):
        tok = tokenizer(arch)
        assert [tok.encode(t) for t in text] == want, arch
        assert tok.clean_fn(text[0]) == text[0].lower(), arch  # strip_trigger cuts this cleaned text


def _claim_in_child(uid: int, lock_dir: Path, count: int = 2):
    """claim_gpu in a forked child running as `uid` (no exec: the child needs no access to the interpreter's
    files). Returns what it claimed (or its error) and a function that lets it exit, releasing its lock."""
    from unlearnable import provenance

    result_r, result_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(result_r)
            os.close(hold_w)
            os.setgid(uid)
            os.setuid(uid)
            provenance._HELD_GPUS.clear()
            os.write(result_w, str(provenance.claim_gpu(count, str(lock_dir))).encode())
        except BaseException as e:  # noqa: BLE001 - reported to the parent, whatever it is
            os.write(result_w, f"{type(e).__name__}: {e}".encode())
        finally:
            os.close(result_w)
            os.read(hold_r, 1)  # hold the lock until the parent lets go
            os._exit(0)
    os.close(result_w)
    os.close(hold_r)
    got = os.read(result_r, 1000).decode()
    os.close(result_r)

    def release():
        os.close(hold_w)
        os.waitpid(pid, 0)

    return got, release


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as two users")
def test_two_users_on_one_host_both_get_a_gpu():
    """A shared /tmp: root's job holds its lock, and `nobody`'s job must still get a GPU, never an error. A
    lock file nobody cannot open (planted by another owner) counts as a busy GPU: nobody takes the next."""
    import shutil
    import tempfile

    nobody = 65534
    shared = Path(tempfile.mkdtemp(prefix="unlearnable-shared-tmp-"))  # pytest's own tmp is root's alone (0700)
    shared.chmod(0o1777)
    try:
        _two_users(shared, nobody)
    finally:
        shutil.rmtree(shared)


def _two_users(shared: Path, nobody: int) -> None:
    root_got, release_root = _claim_in_child(0, shared)
    try:
        assert root_got == "0"
        planted = shared / f"unlearnable-{nobody}-gpu0.lock"
        planted.write_text("")
        planted.chmod(0o600)
        nobody_got, release_nobody = _claim_in_child(nobody, shared)
        release_nobody()
    finally:
        release_root()
    assert nobody_got == "1"


def test_a_claimed_gpu_becomes_the_current_device(monkeypatch):
    import torch

    from unlearnable import provenance

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(provenance, "claim_gpu", lambda count: 1)
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.append(torch.device(d)))
    assert provenance.resolve_device("cuda") == torch.device("cuda", 1)
    assert current == [torch.device("cuda", 1)]
    assert provenance.resolve_device("cuda:0") == torch.device("cuda", 0) and current[-1] == torch.device("cuda", 0)


def test_results_name_the_gpu_cudnn_and_precision_they_ran_with(monkeypatch):
    """GPU numbers differ by GPU kind and precision: every record says which, and the summary row carries it."""
    from unlearnable import provenance
    from unlearnable.workflow.jobs import summary_row

    cpu = provenance.versions(torch.device("cpu"))
    assert (cpu["device"], cpu["gpu"], cpu["cudnn"], cpu["precision"]) == ("cpu", "none", "none", "fp32")
    assert provenance.versions(torch.device("cpu"), "bf16")["precision"] == "bf16"  # the CPU-bf16 switch
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    gpu = provenance.device_record(torch.device("cuda"))
    assert gpu == {"device": "cuda", "gpu": "NVIDIA H200 #1 (sm_90)", "cudnn": "91002", "precision": "bf16"}
    assert provenance.device_record(torch.device("cuda:0"), "fp32")["precision"] == "fp32"
    row = summary_row({"cell": {"dataset": "d", "method": "clean"}, "seed": 0, "metrics": {"t2i_r1": 1.0},
                       "versions": {"cpu": "x", "torch_threads": "1", **gpu}})
    assert (row["gpu"], row["precision"], row["cudnn"], row["device"]) == ("NVIDIA H200 #1 (sm_90)", "bf16",
                                                                            "91002", "cuda")
