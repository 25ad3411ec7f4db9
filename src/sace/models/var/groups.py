"""Adapter parameter groups of the VAR transformer: stable group names -> module-name regexes (the
per-architecture table, as :mod:`sace.models.infinity.groups`; module names follow
``FoundationVision/VAR: models/var.py, models/basic_var.py``).

VAR has no text stream: the class embedding reaches the network through the SOS token and through the AdaLN
projections. Those projections run on the *condition stream* (their gate is the scale whose condition is
being prepared), like Infinity's text-path layers.
"""

MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "self_attn": (r"blocks\.\d+\.attn\.mat_qkv", r"blocks\.\d+\.attn\.proj"),
    "ffn": (r"blocks\.\d+\.ffn\.fc1", r"blocks\.\d+\.ffn\.fc2"),
    "adaln": (r"blocks\.\d+\.ada_lin\.1",),
    "adaln_shared": (r"shared_ada_lin\.1",),
    "head": (r"head",),
    "head_adaln": (r"head_nm\.ada_lin\.1",),
    "word_embed": (r"word_embed",),
}
#: groups computed on the condition stream (class embedding -> AdaLN parameters)
CONDITION_STREAM = ("adaln", "adaln_shared", "head_adaln")
#: adapter groups the erasure methods train on VAR by default: the class enters through the AdaLN of every block
#: and of the head (condition stream) and the scale-0 token's FFN carries it to the logits
DEFAULT_MODULES = ("adaln", "ffn", "head_adaln")
