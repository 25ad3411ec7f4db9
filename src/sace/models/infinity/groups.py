"""Adapter parameter groups of the Infinity transformer: stable group names -> module-name regexes (the
per-architecture table in the style of peft's ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``;
module names follow ``FoundationVision/Infinity: infinity/models/infinity.py``)."""

MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "cross_attn_q": (r"blocks\.\d+\.ca\.mat_q",),
    "cross_attn_kv": (r"blocks\.\d+\.ca\.mat_kv",),
    "cross_attn_out": (r"blocks\.\d+\.ca\.proj",),
    "ffn": (r"blocks\.\d+\.ffn\.fc1", r"blocks\.\d+\.ffn\.fc2"),
    "self_attn": (r"blocks\.\d+\.sa\.mat_qkv", r"blocks\.\d+\.sa\.proj"),
    "text_pool": (r"text_proj_for_sos\.ca\.mat_kv", r"text_proj_for_sos\.ca\.proj"),
    "text_proj": (r"text_proj_for_ca\.0", r"text_proj_for_ca\.2"),
    "adaln_shared": (r"shared_ada_lin\.1",),
    "head": (r"head",),
    "head_adaln": (r"head_nm\.ada_lin\.1",),
}
#: groups computed on the text stream (their gate is the scale whose condition is being prepared)
TEXT_STREAM = ("cross_attn_kv", "text_pool", "text_proj", "adaln_shared", "head_adaln")
