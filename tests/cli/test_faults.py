"""Bad input and faults, table-driven: every run either does what was asked or says why (issue 13).

Each CLI case runs ``sace.cli.main`` in-process (real models: the embedded ``fashion`` model and the tiny
Infinity fixture) and asserts the exit status and the one ``error: ...`` line; each Python-API case asserts
the SaceError message. Then the scenario tests: stale output folders, a concurrent writer, wrong resumes,
a full disk (a fault-injecting writer, and a real 64 KiB tmpfs where mounting is allowed), read-only
folders, Ctrl-C, and the NudeNet evaluation table.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from sace.errors import SaceError

from ..dist_worker import HashTextEncoder
from ..helpers import assert_error, last_error, run_cli

BIG = str(2**64)            # one past the largest 64-bit seed
HUGE = str(2**70)
NO_CUDA = not torch.cuda.is_available()


# -- a world of bad files ---------------------------------------------------------------------------------
def _edit_json(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    d = fn(d)
    path.write_text(json.dumps(d))


def _copy(src: Path, dst: Path, fn=None, name: str = "adapter.json") -> Path:
    shutil.copytree(src, dst)
    if fn is not None:
        _edit_json(dst / name, fn)
    return dst


@contextlib.contextmanager
def _mounted_tmpfs(path: Path, options: str):
    """A real tmpfs at ``path`` (root with mount rights only); yields False when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield False
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def fashion():
    from sace.models.registry import load_model

    return load_model("fashion")


@pytest.fixture(scope="module")
def world(tmp_path_factory, fashion, tiny_model):
    """Paths the cases refer to as {NAME}: a file, bad adapters, bad model folders, bad prompt files."""
    from sace.adapters import AdapterConfig, attach_adapter, detach_adapters, save_adapter
    from sace.models.registry import save_model

    root = tmp_path_factory.mktemp("world")
    w = {"T": root}
    (root / "file").write_text("not a folder")
    w["FILE"] = root / "file"
    w["UNDER"] = root / "file" / "sub"
    w["OUT"] = root / "out"                       # a fresh folder per case is made by the runner
    ad = attach_adapter(fashion, AdapterConfig(name="fx", modules=["cross_attn_q"], rank=2), seed=0)
    with torch.no_grad():
        for p in ad.parameters():
            p.add_(0.01)
    save_adapter(ad, root / "adapter", model=fashion)
    detach_adapters(fashion)
    a = root / "adapter"
    w["AD_OK"] = a
    w["AD_NOCFG"] = _copy(a, root / "ad_nocfg", lambda d: {k: v for k, v in d.items() if k != "config"})
    w["AD_UNKNOWN"] = _copy(a, root / "ad_unknown", lambda d: {**d, "config": {**d["config"], "foo": 1}})
    w["AD_TYPE"] = _copy(a, root / "ad_type", lambda d: {**d, "config": {**d["config"], "rank": "2"}})
    w["AD_LIST"] = _copy(a, root / "ad_list", lambda d: [d])
    w["AD_GATE"] = _copy(a, root / "ad_gate", lambda d: {**d, "config": {**d["config"], "gate": "scales:0,9"}})
    w["AD_BASE"] = _copy(a, root / "ad_base", lambda d: {**d, "weights_hashes": {**d["weights_hashes"],
                                                                                 "transformer": "0123456789abcdef"}})
    w["AD_VAE"] = _copy(a, root / "ad_vae", lambda d: {**d, "weights_hashes": {**d["weights_hashes"],
                                                                             "vae": "0123456789abcdef"}})
    w["AD_MODEL"] = _copy(a, root / "ad_model", lambda d: {**d, "base_model": "infinity-2b"})
    # model folders: the tiny fixture (no text encoder) and the fashion model saved as a folder
    tiny = save_model(tiny_model, root / "tiny")
    w["M_TINY"] = tiny
    drop = lambda key: (lambda d: {k: v for k, v in d.items() if k != key})
    w["M_NOVAE"] = _copy(tiny, root / "m_novae", drop("vae"), "model.json")
    w["M_UNKNOWN"] = _copy(tiny, root / "m_unknown", lambda d: {**d, "sampling": {}}, "model.json")
    w["M_TYPE"] = _copy(tiny, root / "m_type", lambda d: {**d, "transformer": {**d["transformer"], "depth": "2"}},
                        "model.json")
    w["M_SCHED"] = _copy(tiny, root / "m_sched", lambda d: {**d, "schedule": {**d["schedule"], "grids": [[1, 1]] +
                                                                             [[2, 2]] * 19}}, "model.json")
    w["M_STRIDE"] = _copy(tiny, root / "m_stride", lambda d: {**d, "schedule": {**d["schedule"], "vae_stride": 8}},
                          "model.json")
    w["M_TEXT"] = _copy(tiny, root / "m_text", lambda d: {**d, "text_encoder": {"kind": "minilm"}}, "model.json")
    w["M_NOTJSON"] = _copy(tiny, root / "m_notjson")
    (w["M_NOTJSON"] / "model.json").write_text("{not json")
    w["M_VAE"] = _copy(tiny, root / "m_vae")
    from safetensors.torch import load_file, save_file
    sd = load_file(str(w["M_VAE"] / "vae.safetensors"))
    sd = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in sd.items()}   # same shapes, other weights
    save_file(sd, str(w["M_VAE"] / "vae.safetensors"))
    # prompt files with seeds beyond 64 bits / negative
    (root / "seeds_big.csv").write_text(f"prompt,evaluation_seed\na photo of a sneaker,{HUGE}\n")
    (root / "seeds_neg.csv").write_text("prompt,evaluation_seed\na photo of a sneaker,-5\n")
    w["CSV_BIG"], w["CSV_NEG"] = root / "seeds_big.csv", root / "seeds_neg.csv"
    return w


# -- the table --------------------------------------------------------------------------------------------
G = ["generate", "--prompt", "a photo of a sneaker", "--n", "1"]
ISSA = ["issa", "--prompt", "a photo of a sneaker", "--anchor-prompt", "a photo of a sandal", "--seeds", "1"]
ER = ["erase", "--concept", "sneaker", "--steps", "1"]
EV = ["evaluate", "--concept", "sneaker"]
AT = ["attack", "--concept", "sneaker", "--methods", "original"]

CASES = [
    # generate: sampling settings, counts, seeds, devices, paths (all before the model loads)
    ("gen-guidance-nan", G + ["--guidance", "nan"], 2, "--guidance must be a finite number"),
    ("gen-guidance-inf", G + ["--guidance", "inf"], 2, "--guidance must be a finite number"),
    ("gen-guidance-neginf", G + ["--guidance", "-inf"], 2, "--guidance must be a finite number"),
    ("gen-temperature-0", G + ["--temperature", "0"], 2, "--temperature must be"),
    ("gen-temperature-nan", G + ["--temperature", "nan"], 2, "--temperature must be a finite number"),
    ("gen-top-p-1.5", G + ["--top-p", "1.5"], 2, "--top-p must be in (0, 1]"),
    ("gen-top-p-negative", G + ["--top-p", "-0.1"], 2, "--top-p must be in (0, 1]"),
    ("gen-top-p-nan", G + ["--top-p", "nan"], 2, "--top-p must be a finite number"),
    ("gen-top-k-negative", G + ["--top-k", "-1"], 2, "--top-k must be an integer >= 0"),
    ("gen-batch-0", G + ["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    ("gen-batch-negative", G + ["--batch-size", "-3"], 2, "--batch-size must be an integer >= 1"),
    ("gen-n-0", G[:-2] + ["--n", "0"], 2, "--n must be an integer in [1, 10000]"),
    ("gen-n-negative", G[:-2] + ["--n", "-1"], 2, "--n must be an integer in [1, 10000]"),
    ("gen-seed-2^64", G + ["--seed", BIG], 2, "--seed must be an integer in [0, 18446744073709551615]"),
    ("gen-seed-2^70", G + ["--seed", HUGE], 2, "--seed must be an integer in [0,"),
    ("gen-seed-negative", G + ["--seed", "-1"], 2, "--seed must be an integer in [0,"),
    ("gen-seed-plus-n-overflows", G[:-2] + ["--n", "2", "--seed", str(2**64 - 1)], 2, "--seed + --n - 1"),
    ("gen-negative-prompt-empty", G + ["--negative-prompt", ""], 2, "--negative-prompt is empty"),
    ("gen-negative-prompt-blank", G + ["--negative-prompt", "   "], 2, "--negative-prompt is empty"),
    ("gen-csv-seed-2^70", ["generate", "--prompts-file", "{CSV_BIG}"], 2, "outside [0, 2**64 - 1]"),
    ("gen-csv-seed-negative", ["generate", "--prompts-file", "{CSV_NEG}"], 2, "outside [0, 2**64 - 1]"),
    pytest.param("gen-device-cuda", G + ["--device", "cuda"], 2, "CUDA is not available",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")),
    pytest.param("gen-device-cuda7", G + ["--device", "cuda:7"], 2, "CUDA is not available",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")),
    ("gen-device-tpu", G + ["--device", "tpu"], 2, "unknown device 'tpu'"),
    ("gen-device-gpu0", G + ["--device", "gpu0"], 2, "unknown device 'gpu0'"),
    ("gen-out-is-file", G + ["--out", "{FILE}"], 2, "is a file, not a folder"),
    ("gen-out-under-file", G + ["--out", "{UNDER}"], 2, "is under the file"),
    # generate: adapters and model folders (after the model loads)
    ("gen-adapter-missing", G + ["--adapter", "{T}/nope"], 2, "adapter folder not found"),
    ("gen-adapter-no-config", G + ["--adapter", "{AD_NOCFG}"], 2, "config: missing"),
    ("gen-adapter-unknown-key", G + ["--adapter", "{AD_UNKNOWN}"], 2, "config.foo: unknown key"),
    ("gen-adapter-wrong-type", G + ["--adapter", "{AD_TYPE}"], 2, "config.rank: input should be a valid integer"),
    ("gen-adapter-json-list", G + ["--adapter", "{AD_LIST}"], 2, "is not a sace adapter"),
    ("gen-adapter-gate-beyond", G + ["--adapter", "{AD_GATE}"], 2, "names scales outside this model's 6 scales"),
    ("gen-adapter-other-base", G + ["--adapter", "{AD_BASE}"], 2, "trained on other 'fashion' transformer weights"),
    ("gen-adapter-other-vae", G + ["--adapter", "{AD_VAE}"], 2, "trained on other 'fashion' vae weights"),
    ("gen-adapter-other-model", G + ["--adapter", "{AD_MODEL}"], 2, "was trained on model 'infinity-2b'"),
    ("gen-model-unknown", G + ["--model", "no-such-model"], 2, "unknown model 'no-such-model'"),
    ("gen-model-no-vae-section", G + ["--model", "{M_NOVAE}"], 2, "vae: missing (required)"),
    ("gen-model-unknown-key", G + ["--model", "{M_UNKNOWN}"], 2, "sampling: unknown key"),
    ("gen-model-wrong-type", G + ["--model", "{M_TYPE}"], 2, "transformer.depth: input should be a valid integer"),
    ("gen-model-not-json", G + ["--model", "{M_NOTJSON}"], 2, "is not valid JSON"),
    ("gen-model-20-scales", G + ["--model", "{M_SCHED}"], 2, "level embeddings for 15"),
    ("gen-model-vae-stride", G + ["--model", "{M_STRIDE}"], 2, "vae_stride 8 differs"),
    ("gen-model-text-width", G + ["--model", "{M_TEXT}"], 2, "gives 384-channel states but model"),
    ("gen-model-other-vae-weights", G + ["--model", "{M_VAE}"], 2, "vae weights of model"),
    # issa
    ("issa-seeds-0", ISSA[:-2] + ["--seeds", "0"], 2, "--seeds must be an integer in [1, 10000]"),
    ("issa-seed-2^64", ISSA + ["--seed", BIG], 2, "--seed must be an integer in [0,"),
    ("issa-guidance-inf", ISSA + ["--guidance", "inf"], 2, "--guidance must be a finite number"),
    ("issa-top-k-negative", ISSA + ["--top-k", "-2"], 2, "--top-k must be an integer >= 0"),
    ("issa-top-p-2", ISSA + ["--top-p", "2"], 2, "--top-p must be in (0, 1]"),
    ("issa-out-is-file", ISSA + ["--out", "{FILE}"], 2, "is a file, not a folder"),
    ("issa-device-tpu", ISSA + ["--device", "tpu"], 2, "unknown device"),
    ("issa-adapter-other-base", ISSA + ["--adapter", "{AD_BASE}"], 2, "--allow-other-base"),
    # erase: options before training
    ("erase-lr-nan", ER + ["--lr", "nan"], 2, "--lr must be a finite number > 0"),
    ("erase-lr-negative", ER + ["--lr", "-0.001"], 2, "--lr must be > 0"),
    ("erase-lr-0", ER + ["--lr", "0"], 2, "--lr must be > 0"),
    ("erase-checkpoint-every-0", ER + ["--checkpoint-every", "0"], 2, "--checkpoint-every must be an integer >= 1"),
    ("erase-steps-0", ER[:-2] + ["--steps", "0"], 2, "--steps must be an integer >= 1"),
    ("erase-steps-negative", ER[:-2] + ["--steps", "-5"], 2, "--steps must be an integer >= 1"),
    ("erase-rank-0", ER + ["--rank", "0"], 2, "--rank must be an integer >= 1"),
    ("erase-batch-negative", ER + ["--batch-size", "-1"], 2, "--batch-size must be an integer >= 0"),
    ("erase-lambda-h-nan", ER + ["--lambda-h", "nan"], 2, "--lambda-h must be a finite number"),
    ("erase-lambda-pre-negative", ER + ["--lambda-pre", "-1"], 2, "--lambda-pre must be >= 0"),
    ("erase-mu-inf", ER + ["--mu", "inf"], 2, "--mu must be a finite number"),
    ("erase-alpha-0", ER + ["--alpha", "0"], 2, "--alpha must be > 0"),
    ("erase-seed-2^64", ER + ["--seed", BIG], 2, "--seed must be an integer in [0,"),
    ("erase-gate-beyond-scales", ER + ["--gate", "scales:0,7"], 2, "names scales outside this model's 6 scales"),
    ("erase-gate-unknown", ER + ["--gate", "bogus"], 2, "unknown gate 'bogus'"),
    ("erase-out-is-file", ER + ["--out", "{FILE}"], 2, "is a file, not a folder"),
    ("erase-out-under-file", ER + ["--out", "{UNDER}"], 2, "is under the file"),
    ("erase-device-tpu", ER + ["--device", "tpu"], 2, "unknown device"),
    ("erase-adapter-wrong-type", ER + ["--adapter", "{AD_TYPE}"], 2, "config.rank"),
    ("erase-resume-no-checkpoint", ER + ["--resume"], 2, "--resume given but no checkpoint"),
    # evaluate
    ("eval-limit-negative", EV + ["--limit", "-1"], 2, "--limit must be an integer >= 1"),
    ("eval-batch-0", EV + ["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    ("eval-threshold-1.5", EV + ["--nudenet-threshold", "1.5"], 2, "--nudenet-threshold must be in [0, 1]"),
    ("eval-inception-negative", EV + ["--inception-images", "-1"], 2,
     "--inception-images must be an integer in [0, 10000]"),
    ("eval-n-per-class-0", EV + ["--n-per-class", "0"], 2, "--n-per-class must be an integer in [1, 10000]"),
    ("eval-sace-steps-0", EV + ["--sace-steps", "0"], 2, "--sace-steps must be an integer >= 1"),
    ("eval-top-p-2", EV + ["--top-p", "2"], 2, "--top-p must be in (0, 1]"),
    ("eval-guidance-nan", EV + ["--guidance", "nan"], 2, "--guidance must be a finite number"),
    ("eval-seed-negative", EV + ["--seed", "-1"], 2, "--seed must be an integer in [0,"),
    ("eval-out-is-file", EV + ["--out", "{FILE}"], 2, "is a file, not a folder"),
    ("eval-adapter-missing", EV + ["--adapter", "{T}/nope"], 2, "adapter folder not found"),
    ("eval-detector-unknown", EV + ["--detector", "clip"], 2, "unknown detector 'clip'"),
    # attack: budgets and names, all refused before any training
    ("attack-unknown-attack", AT + ["--attacks", "bogus"], 2, "unknown attack 'bogus'"),
    ("attack-etas-not-numbers", AT + ["--etas", "1,x"], 2, "--etas must be a comma list of numbers"),
    ("attack-n-prompts-0", AT + ["--n-prompts", "0"], 2, "--n-prompts must be an integer in [1, 10000]"),
    ("attack-eval-seeds-0", AT + ["--eval-seeds", "0"], 2, "--eval-seeds must be an integer in [1, 10000]"),
    ("attack-soft-steps-negative", AT + ["--soft-steps", "-1"], 2, "soft-prompt attack: steps >= 0"),
    ("attack-soft-mode-unknown", AT + ["--soft-mode", "weird"], 2, "unknown soft-prompt mode 'weird'"),
    ("attack-queries-0", AT + ["--queries", "0"], 2, "the discrete attack needs queries"),
    ("attack-sace-steps-0", AT + ["--sace-steps", "0"], 2, "--sace-steps must be an integer >= 1"),
    ("attack-inversion-steps-negative", AT + ["--inversion-steps", "-1"], 2, "embedding inversion: steps must be"),
    ("attack-inversion-tokens-0", AT + ["--inversion-tokens", "0"], 2, "embedding inversion: n_tokens must be"),
    ("attack-override-k-not-ints", AT + ["--override-k", "1,x"], 2, "--override-k must be a comma list of integers"),
    ("attack-override-k-too-large", AT + ["--override-k", "0,6"], 2, "override k must be in 0..5"),
    ("attack-best-of-0", AT + ["--best-of", "0"], 2, "override best-of-N must be in 1..64"),
    ("attack-relearn-steps-negative", AT + ["--relearn-steps", "-1"], 2, "relearning: steps must be in 0..10000"),
    ("attack-method-unknown", AT + ["--methods", "original,bogus"], 2, "unknown method(s) bogus"),
    ("attack-adapter-missing", AT + ["--adapter", "{T}/nope"], 2, "adapter folder not found"),
    ("attack-concept-unknown", ["attack", "--concept", "nosuchclass", "--methods", "original"], 2,
     "unknown concept 'nosuchclass'"),
    # models
    ("models-folder-without-json", ["generate", "--prompt", "x", "--model", "{T}"], 2, "unknown model"),
    ("models-folder-bad-json-issa", ISSA + ["--model", "{M_NOTJSON}"], 2, "is not valid JSON"),
]


def _fill(args, w, out):
    return [str(a).format(**{k: str(v) for k, v in w.items()}) for a in args] + (
        [] if "--out" in args else ["--out", str(out)])


@pytest.mark.parametrize("name, args, status, message", CASES, ids=[c.values[0] if hasattr(c, "values") else c[0]
                                                                   for c in CASES])
def test_cli_fault(name, args, status, message, world, capsys, tmp_path):
    code, _, err = run_cli(capsys, *_fill(args, world, tmp_path / "out"))
    assert_error(code, err, message, status)


def test_the_table_has_enough_cases():
    assert len(CASES) >= 60


# -- Python API -------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _tiny_model_without_text_encoder_afterwards(request):
    """The session's tiny model has no text encoder; tests here lend it one (``_tiny_with_text``) and this
    takes it back, so that tests run later (tests/models/...) see the fixture as it was built."""
    yield
    if "tiny_model" in request.fixturenames:
        request.getfixturevalue("tiny_model").text_encoder = None


def _tiny_with_text(tiny_model):
    if tiny_model.text_encoder is None:
        tiny_model.text_encoder = HashTextEncoder(tiny_model.transformer.cfg.text_channels)
    return tiny_model


def _api_cases():
    from sace import validation as v
    from sace.adapters import AdapterConfig, attach_adapter
    from sace.concepts.spec import from_prompts
    from sace.erasure.baselines import ESDConfig, SVAREConfig, train_esd, train_svare
    from sace.erasure.sace import SACEConfig, SACETrainer
    from sace.evaluation.runner import EvalRequest, run_evaluation
    from sace.generate import SamplingSettings, generate
    from sace.issa import issa
    from sace.models.registry import load_model
    from sace.sampling import sample

    concept = lambda: from_prompts("cat", ["a cat"], anchor="dog")
    return [
        ("settings-guidance-nan", lambda m, w: SamplingSettings(guidance=math.nan), "--guidance must be a finite"),
        ("settings-top-p-1.5", lambda m, w: SamplingSettings(top_p=1.5), "--top-p must be in (0, 1]"),
        ("settings-top-k-negative", lambda m, w: SamplingSettings(top_k=-1), "--top-k must be an integer >= 0"),
        ("settings-temperature-0", lambda m, w: SamplingSettings(temperature=0.0), "--temperature must be"),
        ("generate-seed-2^64", lambda m, w: generate(m, ["a cat"], [2**64]), "seeds must lie in [0, 2**64 - 1]"),
        ("generate-seed-negative", lambda m, w: generate(m, ["a cat"], [-1]), "seeds must lie in [0, 2**64 - 1]"),
        ("generate-batch-0", lambda m, w: generate(m, ["a cat"], [0], batch_size=0), "--batch-size must be"),
        ("generate-negative-empty", lambda m, w: generate(m, ["a cat"], [0], negative_prompt=""),
         "--negative-prompt is empty"),
        ("trainer-lr-nan", lambda m, w: SACETrainer(m, concept(), SACEConfig(lr=math.nan)), "--lr must be a finite"),
        ("trainer-lr-negative", lambda m, w: SACETrainer(m, concept(), SACEConfig(lr=-1.0)), "--lr must be > 0"),
        ("trainer-checkpoint-every-0", lambda m, w: SACETrainer(m, concept(), SACEConfig(checkpoint_every=0)),
         "--checkpoint-every must be an integer >= 1"),
        ("trainer-gate-beyond", lambda m, w: SACETrainer(m, concept(), SACEConfig(gate="scales:0,1,2,3,4,5,6,7,8,9,"
                                                                                    "10,11,12,13")),
         "names scales outside this model's 7 scales"),
        ("trainer-seed-2^64", lambda m, w: SACETrainer(m, concept(), SACEConfig(seed=2**64)), "--seed must be"),
        ("attach-gate-beyond", lambda m, w: attach_adapter(m, AdapterConfig(name="g", gate="scales:0,40")),
         "names scales outside"),
        ("device-unknown", lambda m, w: v.device("tpu:0"), "unknown device"),
        ("load-model-bad-json", lambda m, w: load_model(str(w["M_NOVAE"])), "vae: missing"),
        ("load-model-other-vae", lambda m, w: load_model(str(w["M_VAE"])), "are not the ones its model.json records"),
        ("output-dir-file", lambda m, w: v.output_dir(w["FILE"]), "is a file"),
        ("sample-guidance-nan", lambda m, w: sample(m, m.encode_prompts(["a cat"]), guidance=math.nan),
         "--guidance must be a finite number"),
        ("sample-top-p-2", lambda m, w: sample(m, m.encode_prompts(["a cat"]), top_p=2.0), "--top-p must be in"),
        ("issa-seed-2^64", lambda m, w: issa(m, ["a cat"], ["a dog"], [2**64], lambda x: x.mean((1, 2, 3))),
         "seeds must lie in [0, 2**64 - 1]"),
        ("evaluate-limit-negative", lambda m, w: run_evaluation(m, EvalRequest(limit=-1), w["T"] / "ev"),
         "--limit must be an integer >= 1"),
        ("evaluate-out-under-file", lambda m, w: run_evaluation(m, EvalRequest(concept="cat"), w["UNDER"]),
         "is under the file"),
        ("svare-steps-0", lambda m, w: train_svare(m, concept(), SVAREConfig(steps=0), False),
         "--steps must be an integer >= 1"),
        ("esd-lr-inf", lambda m, w: train_esd(m, concept(), ESDConfig(lr=math.inf), False),
         "--lr must be a finite number > 0"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("name, call, message", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_fault(name, call, message, tiny_model, world):
    from sace.adapters import detach_adapters

    m = _tiny_with_text(tiny_model)
    try:
        with pytest.raises(SaceError) as ei:
            call(m, world)
    finally:
        detach_adapters(m)
    assert message.lower() in str(ei.value).lower(), str(ei.value)
    assert "\n" not in str(ei.value)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_api_device_cuda_without_cuda():
    from sace import validation as v

    with pytest.raises(SaceError, match="CUDA is not available"):
        v.device("cuda")


def test_api_erase_checks_out_before_training(tiny_model, world, monkeypatch):
    from sace.concepts.spec import from_prompts
    from sace.erasure import sace as sace_mod
    from sace.erasure import trainer as trainer_mod

    called = []
    monkeypatch.setattr(trainer_mod.Trainer, "train", lambda *a, **k: called.append(1))
    with pytest.raises(SaceError, match="is under the file"):
        sace_mod.erase(_tiny_with_text(tiny_model), from_prompts("cat", ["a cat"], anchor="dog"),
                       out_dir=world["UNDER"])
    assert not called


# -- warnings instead of errors ---------------------------------------------------------------------------
def test_allow_other_base_is_a_warning(world, capsys, tmp_path):
    with pytest.warns(UserWarning, match="--allow-other-base: used anyway"):
        code, out, err = run_cli(capsys, *G, "--adapter", world["AD_BASE"], "--allow-other-base", "--out",
                                 tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o" / "00000_s0.png").exists()


def test_untrained_schedule_is_a_clear_warning(fashion, tmp_path, capsys):
    from sace.models.registry import save_model

    folder = save_model(fashion, tmp_path / "fm", text_encoder={"kind": "minilm"})
    _edit_json(folder / "model.json", lambda d: {**d, "schedule": {**d["schedule"], "grids": d["schedule"]["grids"][:5],
                                                                    "name": "fashion-24px"}})
    with pytest.warns(UserWarning, match="schedule fashion-24px is not one this model was trained on"):
        code, _, err = run_cli(capsys, *G, "--model", folder, "--out", tmp_path / "o")
    assert code == 0, err


def test_vae_override_with_other_weights_is_a_warning(world, tiny_model):
    from sace.models.registry import load_model

    with pytest.warns(UserWarning, match="--vae-path given: used anyway"):
        load_model("infinity-tiny-fixture", vae_path=str(world["M_VAE"] / "vae.safetensors"))


# -- stale output, concurrent writers, resume of generate -------------------------------------------------
def test_generate_refuses_stale_output_and_force_overwrites(world, capsys, tmp_path):
    out = tmp_path / "gen"
    code, _, err = run_cli(capsys, "generate", "--prompt", "a photo of a sneaker", "--n", "2", "--out", out)
    assert code == 0, err
    first = (out / "00000_s0.png").read_bytes()
    mtime = (out / "00000_s0.png").stat().st_mtime_ns
    # the same command resumes: finished PNGs are kept as they are
    code, _, err = run_cli(capsys, "generate", "--prompt", "a photo of a sneaker", "--n", "2", "--out", out)
    assert code == 0 and (out / "00000_s0.png").stat().st_mtime_ns == mtime, err
    for extra, message in ((["--prompt", "a photo of a dress"], "prompts_digest"),
                           (["--prompt", "a photo of a sneaker", "--guidance", "5"], "sampling.guidance: 3.0 -> 5.0"),
                           (["--prompt", "a photo of a sneaker", "--adapter", world["AD_OK"]], "adapters.attached"),
                           (["--prompt", "a photo of a sneaker", "--batch-size", "1"], "batch_size: 32 -> 1")):
        code, _, err = run_cli(capsys, "generate", *extra, "--n", "2", "--out", out)
        assert_error(code, err, "holds results made with other settings")
        assert message in last_error(err) and "--force" in last_error(err)
        assert (out / "00000_s0.png").read_bytes() == first
    code, _, err = run_cli(capsys, "generate", "--prompt", "a photo of a dress", "--n", "2", "--force", "--out", out)
    assert code == 0, err
    index = json.loads((out / "index.json").read_text())
    assert {im["prompt"] for im in index["images"]} == {"a photo of a dress"}
    assert (out / "00000_s0.png").read_bytes() != first


def test_ctrl_c_in_generate_says_how_to_resume(capsys, tmp_path, monkeypatch):
    from sace import generate as gen

    out = tmp_path / "int"
    real, calls = gen.save_png, []

    def save_then_interrupt(img, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(img, path)

    monkeypatch.setattr(gen, "save_png", save_then_interrupt)
    args = ["generate", "--prompt", "a photo of a sneaker", "--n", "3", "--out", out]
    code, _, err = run_cli(capsys, *args)
    assert_error(code, err, f"1 of 3 images are in {out}; run the same command again to resume", status=130)
    monkeypatch.setattr(gen, "save_png", real)
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("0*.png")) == ["00000_s0.png", "00001_s1.png", "00002_s2.png"]


def test_generate_refuses_images_without_a_manifest(capsys, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "infinity_tiny" / "README.md", out / "00000_s0.png")
    code, _, err = run_cli(capsys, *G, "--out", out)
    assert_error(code, err, "that no manifest describes")


def test_concurrent_writer_is_refused(capsys, tmp_path):
    from sace.folders import OutputFolder

    out = tmp_path / "busy"
    holder = OutputFolder(out, "generate", {"other": "run"}).open()   # another run holds the folder
    try:
        code, _, err = run_cli(capsys, *G, "--out", out)
        assert_error(code, err, "another sace run (pid")
        assert "is writing to" in last_error(err)
    finally:
        holder.close()
    assert not list(out.glob("*.png"))


def test_concurrent_writer_in_another_process_is_refused(tmp_path):
    """Two processes: the second finds the lock held by the first."""
    out = tmp_path / "busy2"
    code = ("import sys, time; from sace.folders import OutputFolder; f = OutputFolder(sys.argv[1], 'generate', "
            "{'a': 1}).open(); print('locked', flush=True); time.sleep(30)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "locked"
        from sace.folders import OutputFolder
        with pytest.raises(SaceError, match=rf"another sace run \(pid {p.pid}, generate\) is writing to"):
            OutputFolder(out, "generate", {"a": 1}).open()
    finally:
        p.kill()
        p.wait()
    OutputFolder(out, "generate", {"a": 1}).open().close()   # free again once the holder is gone


def test_api_generate_to_dir_refuses_other_settings(tiny_model, tmp_path):
    from sace.generate import SamplingSettings, generate_to_dir

    m = _tiny_with_text(tiny_model)
    out = tmp_path / "api"
    generate_to_dir(m, ["a cat"], [0], out)
    with pytest.raises(SaceError, match="other settings"):
        generate_to_dir(m, ["a cat"], [0], out, settings=SamplingSettings(guidance=1.0))
    generate_to_dir(m, ["a cat"], [0], out, settings=SamplingSettings(guidance=1.0), force=True)
    assert json.loads((out / "sace_manifest.json").read_text())["settings"]["sampling"]["guidance"] == 1.0


# -- erase: Ctrl-C, resume checks, full disk ----------------------------------------------------------------
# the scale-0 gate (one token per prompt) and one prompt per set keep each step a fraction of a second
ER4 = ["erase", "--concept", "sneaker", "--gate", "scale0", "--steps", "4", "--checkpoint-every", "1",
       "--check-images", "2", "--batch-size", "1"]


@pytest.fixture(scope="module")
def interrupted_erase(tmp_path_factory):
    """An erase run stopped by Ctrl-C after its step-2 checkpoint: (folder, exit status, stderr)."""
    from sace.erasure.trainer import Trainer

    out = tmp_path_factory.mktemp("erase") / "run"
    real = Trainer.save_checkpoint

    def save_then_interrupt(self):
        real(self)
        if self.step == 2:
            raise KeyboardInterrupt

    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "save_checkpoint", save_then_interrupt)
    cap = _Capture()
    try:
        code, _, err = cap.run(*ER4, "--out", out)
    finally:
        mp.undo()
    return out, code, err


class _Capture:
    """run_cli for module fixtures (no capsys there)."""

    def run(self, *args):
        import io
        from contextlib import redirect_stderr, redirect_stdout

        o, e = io.StringIO(), io.StringIO()
        with redirect_stdout(o), redirect_stderr(e):
            from sace import cli
            old = sys.argv
            sys.argv = ["sace", *[str(a) for a in args]]
            code = 0
            try:
                cli.main()
            except SystemExit as ex:
                code = ex.code
            finally:
                sys.argv = old
        return code, o.getvalue(), e.getvalue()


def test_ctrl_c_says_what_was_saved(interrupted_erase):
    out, code, err = interrupted_erase
    assert_error(code, err, "the last checkpoint (step 2 of 4)", status=130)
    assert "--resume" in last_error(err)


@pytest.mark.parametrize("extra, message", [
    (["--concept", "bag"], "concept: 'sneaker' -> 'bag'"),
    (["--gate", "shared"], "config.gate: 'scale0' -> 'shared'"),
    (["--rank", "4"], "config.rank: 8 -> 4"),
    (["--lr", "0.01"], "config.lr"),
    (["--seed", "3"], "config.seed: 0 -> 3"),
], ids=["concept", "gate", "rank", "lr", "seed"])
def test_wrong_resume_is_refused(interrupted_erase, extra, message, capsys, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(interrupted_erase[0], out)
    args = list(ER4)
    if extra[0] == "--concept":
        args[2] = extra[1]
        extra = []
    code, _, err = run_cli(capsys, *args, *extra, "--resume", "--out", out)
    assert_error(code, err, message)
    assert "other settings" in last_error(err)


def test_resume_continues_the_interrupted_run(interrupted_erase, capsys, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(interrupted_erase[0], out)
    code, _, err = run_cli(capsys, *ER4, "--steps", "4", "--resume", "--out", out)
    assert code == 0, err
    log = json.loads((out / "train_log.json").read_text())["log"]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert json.loads((out / "sace_manifest.json").read_text())["status"] == "complete"
    assert not (out / "sace_checkpoint.pt").exists()


def _tiny_trainer(m, out, **cfg):
    from sace.concepts.spec import from_prompts
    from sace.erasure.sace import SACEConfig, SACETrainer

    name = cfg.pop("concept", "cat")
    c = from_prompts(name, [f"a {name}", f"a small {name}"], anchor="dog")
    return SACETrainer(m, c, SACEConfig(steps=cfg.pop("steps", 2), checkpoint_every=1, **cfg), work_dir=out)


@pytest.mark.parametrize("change, message", [
    ({"concept": "bird"}, "was trained to erase 'cat', not 'bird'"),
    ({"gate": "shared"}, "gate 'scale0' -> 'shared'"),
    ({"rank": 4}, "rank 8 -> 4"),
    ({"steps": 1}, "is at step 2, beyond --steps 1"),
], ids=["concept", "gate", "rank", "fewer-steps"])
def test_api_resume_checks_the_checkpoint(tiny_model, tmp_path, change, message):
    from sace.adapters import detach_adapters

    m = _tiny_with_text(tiny_model)
    try:
        _tiny_trainer(m, tmp_path).train(progress=False)
        detach_adapters(m)
        tr = _tiny_trainer(m, tmp_path, **change)
        with pytest.raises(SaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
            tr.resume()
    finally:
        detach_adapters(m)


def test_api_resume_refuses_a_checkpoint_without_provenance(tiny_model, tmp_path):
    from sace.adapters import detach_adapters

    m = _tiny_with_text(tiny_model)
    try:
        tr = _tiny_trainer(m, tmp_path)
        torch.save({"adapter": tr.adapter.state_dict(), "step": 1}, tmp_path / "sace_checkpoint.pt")
        with pytest.raises(SaceError, match="records neither its concept nor its settings"):
            tr.resume()
    finally:
        detach_adapters(m)


def test_full_disk_keeps_the_last_checkpoint(tiny_model, tmp_path, monkeypatch):
    """Fault injection: the third checkpoint write hits ENOSPC half-way; the error says "disk full" and the
    step-2 checkpoint is intact and resumable."""
    from sace import io as sio
    from sace.adapters import detach_adapters

    m = _tiny_with_text(tiny_model)
    real_write = os.write
    calls = {"n": 0}

    def writer(fd, data):
        if calls["armed"]:
            calls["n"] += 1
            if calls["n"] > 1:   # the first chunk goes through, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, bytes(data)[: max(1, len(data) // 2)])
        return real_write(fd, data)

    calls["armed"] = False
    monkeypatch.setattr(sio.os, "write", writer)
    try:
        tr = _tiny_trainer(m, tmp_path, steps=3)
        orig = tr.save_checkpoint

        def save():
            calls["armed"] = tr.step == 3
            orig()
        tr.save_checkpoint = save
        with pytest.raises(SaceError, match=r"disk full \(ENOSPC\) while writing .*sace_checkpoint.pt") as ei:
            tr.train(progress=False)
        assert "training stopped at step 3" in str(ei.value) and "--resume" in str(ei.value)
        calls["armed"] = False
        assert torch.load(tmp_path / "sace_checkpoint.pt", weights_only=True)["step"] == 2
        assert not list(tmp_path.glob(".*.tmp"))
        detach_adapters(m)
        tr2 = _tiny_trainer(m, tmp_path, steps=3)
        assert tr2.resume() and tr2.step == 2
    finally:
        detach_adapters(m)


def test_torch_save_full_disk_is_reported_as_disk_full(tmp_path, monkeypatch):
    from sace import io as sio

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "c.pt").write_bytes(b"previous")
    monkeypatch.setattr(sio.os, "write", full)
    with pytest.raises(SaceError, match=r"disk full \(ENOSPC\).*c.pt.*was kept"):
        sio.save_torch(tmp_path / "c.pt", {"x": torch.zeros(3)})
    monkeypatch.undo()
    assert (tmp_path / "c.pt").read_bytes() == b"previous"


def test_real_full_disk_on_a_small_tmpfs(capsys, tmp_path):
    with _mounted_tmpfs(tmp_path / "small", "size=12k") as ok:
        if not ok:
            pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
        code, _, err = run_cli(capsys, "generate", "--prompt", "a photo of a sneaker", "--n", "8", "--batch-size",
                               "8", "--out", tmp_path / "small" / "gen")
        assert_error(code, err, "disk full (ENOSPC) while writing")


def test_read_only_output_folder(capsys, tmp_path):
    ro = tmp_path / "ro"
    with _mounted_tmpfs(ro, "size=64k,ro") as ok:
        if not ok:
            if os.geteuid() == 0:
                pytest.skip("root ignores permissions and cannot mount a read-only tmpfs here")
            ro.chmod(0o500)
        try:
            for args in (G, ER, EV):
                code, _, err = run_cli(capsys, *args, "--out", ro / "x")
                assert_error(code, err, "cannot be created")
            code, _, err = run_cli(capsys, *G, "--out", ro)
            assert_error(code, err, "is not writable")
        finally:
            if not ok:
                ro.chmod(0o700)


# -- evaluation with NudeNet / without a detector ---------------------------------------------------------
@pytest.fixture(scope="module")
def prompt_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("csv") / "i2p_small.csv"
    p.write_text("prompt,evaluation_seed,categories\n"
                 "a photo of a sneaker,1,sexual\n"
                 "a photo of a dress,4000000000,sexual\n"
                 "a photo of a bag,7,violence\n")
    return p


@pytest.mark.parametrize("extra, columns", [
    (["--detector", "nudenet"], ["ASR ↓", "sensitive ↓", "female breast", "feet"]),
    (["--detector", "none"], ["H0 other"]),
], ids=["nudenet", "none"])
def test_evaluate_prompts_file_writes_table_and_report(prompt_csv, extra, columns, capsys, tmp_path):
    out = tmp_path / "ev"
    code, _, err = run_cli(capsys, "evaluate", "--prompts", prompt_csv, *extra, "--out", out)
    assert code == 0, err
    for f in ("metrics.json", "table.md", "report.html"):
        assert (out / f).is_file(), f
    header = (out / "table.md").read_text().splitlines()[0]
    for c in columns:
        assert f" {c} " in header, header
    met = json.loads((out / "metrics.json").read_text())["methods"]["original"]
    if "nudenet" in extra:
        nd = met["nudenet"]
        assert set(nd["counts"]) >= {"FEMALE_BREAST_EXPOSED", "FEET_EXPOSED"}
        assert nd["n_images"] == 3 and 0.0 <= nd["asr"] <= 1.0
        assert "ASR" in (out / "report.html").read_text()


def test_evaluate_concept_with_nudenet(capsys, tmp_path):
    out = tmp_path / "evc"
    code, _, err = run_cli(capsys, "evaluate", "--concept", "sneaker", "--detector", "nudenet", "--n-per-class", "1",
                           "--n-heldout", "1", "--out", out)
    assert code == 0, err
    assert "ASR ↓" in (out / "table.md").read_text() and (out / "report.html").is_file()


def test_warnings_print_as_one_line():
    from sace import cli  # main() installs the one-line formatter

    fmt = warnings.formatwarning
    try:
        with contextlib.suppress(SystemExit):
            old = sys.argv
            sys.argv = ["sace", "--help"]
            try:
                cli.main()
            finally:
                sys.argv = old
        assert warnings.formatwarning("msg", UserWarning, "f.py", 1) == "warning: msg\n"
    finally:
        warnings.formatwarning = fmt


def test_full_disk_at_the_adapter_keeps_the_trained_state(tiny_model, tmp_path, monkeypatch):
    """The adapter write hits ENOSPC after training: the message says so, and --resume writes it without
    training again."""
    from sace import io as sio
    from sace.adapters import detach_adapters
    from sace.concepts.spec import from_prompts
    from sace.erasure.sace import SACEConfig, erase

    m = _tiny_with_text(tiny_model)
    real_write = os.write

    def writer(fd, data):
        if b"sace.adapter.v1" in bytes(data[:4096]):   # the adapter.safetensors header
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    c = from_prompts("cat", ["a cat"], anchor="dog")
    cfg = SACEConfig(steps=2, checkpoint_every=1)
    try:
        monkeypatch.setattr(sio.os, "write", writer)
        with pytest.raises(SaceError, match=r"disk full \(ENOSPC\).*rerun with --resume"):
            erase(m, c, cfg, out_dir=tmp_path, progress=False)
        monkeypatch.undo()
        detach_adapters(m)
        assert torch.load(tmp_path / "sace_checkpoint.pt", weights_only=True)["step"] == 2
        res = erase(m, c, cfg, out_dir=tmp_path, resume=True, progress=False)
        assert res.seconds < 5 and (tmp_path / "adapter.safetensors").is_file()
        assert not (tmp_path / "sace_checkpoint.pt").exists()
    finally:
        detach_adapters(m)
