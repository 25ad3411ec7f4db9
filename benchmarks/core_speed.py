"""Cost of the model core, as ratios measured in one run (not a timed test).

1. A scale-0-only teacher-forced training step (forward + backward, one token per prompt: what SACE
   needs) against a full-schedule teacher-forced step (what S-VARE / full fine-tuning needs).
2. Sampling with the KV cache against sampling that recomputes the whole prefix at every scale.

Mid-size random-init Infinity (default: 12 blocks, width 768, like the reference's ``infinity_layer12``),
0.06M schedule (521 tokens at 1:1), text length 16 tokens of 2048 channels.

    python benchmarks/core_speed.py [--depth 12 --width 768 --heads 8 --batch 4 --pn 0.06M --device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from sace.models.base import Condition, TokenPyramid
from sace.models.infinity.model import InfinityModel
from sace.models.infinity.schedules import infinity_schedule
from sace.models.infinity.transformer import InfinityConfig, InfinityTransformer
from sace.models.infinity.vae import BSQVAE, VAEConfig
from sace.sampling import draw_bits, make_generators, sample


def build(args) -> InfinityModel:
    torch.manual_seed(0)
    cfg = InfinityConfig(depth=args.depth, embed_dim=args.width, num_heads=args.heads, text_channels=2048,
                         codebook_dim=32, block_chunks=1)
    vae = BSQVAE(VAEConfig(codebook_dim=32, base_ch=32, num_res_blocks=1, encoder_ch_mult=[1] * 5,
                           decoder_ch_mult=[1] * 5, patch_size=16))
    m = InfinityModel(InfinityTransformer(cfg), vae, None, infinity_schedule(1.0, args.pn))
    return m.to(args.device)


def timed(fn, repeats: int, device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def sample_recompute(model: InfinityModel, cond: Condition, gens) -> TokenPyramid:
    """Sampling without a KV cache: every scale re-runs the whole prefix teacher-forced."""
    sch = model.schedule
    bits = []
    for k in range(sch.num_scales):
        tf = model.tf_inputs(TokenPyramid(bits), sch) if bits else None
        z = model.forward_teacher_forced(cond, tf, sch, scales=[k], guidance=3.0, temperature=0.5)[0]
        h, w = sch.grids[k]
        bits.append(draw_bits(z, 900, 0.97, gens).view(cond.batch_size, h, w, -1))
    return TokenPyramid(bits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--pn", default="0.06M")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    m = build(args)
    sch = m.schedule
    g = torch.Generator().manual_seed(0)
    cond = Condition(torch.randn(args.batch, 16, 2048, generator=g), torch.ones(args.batch, 16, dtype=torch.bool))
    tf = torch.randn(args.batch, sch.num_tokens - 1, 32, generator=g).sign().div(32**0.5).to(dev)
    params = [p for p in m.transformer.parameters() if p.requires_grad]
    print(f"config: depth {args.depth}, width {args.width}, {sum(p.numel() for p in params) / 1e6:.1f}M params, "
          f"{sch.num_tokens} tokens ({args.pn}), batch {args.batch}, device {dev}")

    def step(scales):
        def run():
            m.zero_grad(set_to_none=True)
            out = m.forward_teacher_forced(cond, tf if scales != [0] else None, sch, scales=scales, guidance=3.0)
            loss = sum(z.float().logsumexp(-1).mean() for z in out.per_scale)
            loss.backward()
        return run

    t0 = timed(step([0]), args.repeats, dev)
    tf_all = timed(step(None), args.repeats, dev)
    print(f"teacher-forced train step: scale 0 only {t0 * 1e3:.1f} ms, full schedule {tf_all * 1e3:.1f} ms "
          f"-> ratio full/scale0 = {tf_all / t0:.1f}x ({sch.num_tokens} vs 1 token per prompt)")

    with torch.no_grad():
        kv = timed(lambda: sample(m, cond, generator=make_generators(range(args.batch)), decode=False,
                                  keep_logits=False), args.repeats, dev)
        rc = timed(lambda: sample_recompute(m, cond, make_generators(range(args.batch))), args.repeats, dev)
        a = sample(m, cond, generator=make_generators(range(args.batch)), decode=False).pyramid
        b = sample_recompute(m, cond, make_generators(range(args.batch)))
    same = sum(int((x == y).sum()) for x, y in zip(a.bits, b.bits, strict=False)) / sum(x.numel() for x in a.bits)
    print(f"sampling: KV cache {kv:.3f} s, recompute prefix {rc:.3f} s -> speed-up {rc / kv:.1f}x "
          f"(bits agreeing between the two: {same:.4f})")


if __name__ == "__main__":
    main()
