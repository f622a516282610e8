"""A tiny Qwen3.5-architecture GGUF (`qwen35`: Gated DeltaNet linear attention + full attention)
with random weights, the same byte-level vocabulary and Qwen template as the plain test model.

It is the user's model family in miniature: three linear-attention (recurrent) layers, then one
full-attention layer, as Qwen3.5/3.6 interleave them (`full_attention_interval` 4). Its recurrent
state cannot be trimmed back to a shared prefix the way a KV cache can, which is what the prefill
bench measures. The keys and tensor names are llama.cpp's (src/llama-arch.cpp, qwen35 loader in
src/models/qwen35.cpp); the file is deterministic and cached by its recipe's digest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devtools.llamacpp import model as plain_model
from devtools.llamacpp import vocab
from devtools.llamacpp.cache import cache_root, ensure_written, recipe_digest
from devtools.llamacpp.vocab import build_vocabulary

ARCHITECTURE = "qwen35"
EMBEDDING = 64
LAYERS = 4
FULL_ATTENTION_INTERVAL = 4  # every 4th layer is full attention, the rest linear
HEADS = 4
KV_HEADS = 2
HEAD_SIZE = 16
ROPE_SECTIONS = (4, 2, 2, 0)  # interleaved M-RoPE sections: they sum to HEAD_SIZE / 2
FEED_FORWARD = 128
# Gated DeltaNet: key heads (groups), value heads (time-step rank), head width (state size).
LINEAR_KEY_HEADS = 2
LINEAR_VALUE_HEADS = 4
LINEAR_HEAD_SIZE = 16
CONV_KERNEL = 4
TRAINED_CONTEXT = 32768
SEED = 20260102


def is_recurrent(layer: int) -> bool:
    return (layer + 1) % FULL_ATTENTION_INTERVAL != 0


def model_path() -> Path:
    """Where the model for the current recipe lives in the cache (it may not exist yet): the
    recipe is this code, the vocabulary's code and the template."""
    digest = recipe_digest((Path(__file__), Path(vocab.__file__), plain_model.CHAT_TEMPLATE_PATH))
    return cache_root() / "models" / f"tiny-qwen35-{digest}.gguf"


def ensure_model() -> Path:
    """Return the cached model, writing it first if it is missing."""
    return ensure_written(model_path(), write_model)


def write_model(path: Path) -> None:
    """Write the tiny hybrid model to `path`."""
    import gguf

    vocabulary = build_vocabulary()
    writer = gguf.GGUFWriter(str(path), ARCHITECTURE)
    writer.add_name("orchestrator-tiny-qwen35")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(TRAINED_CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_SIZE)
    writer.add_value_length(HEAD_SIZE)
    writer.add_rope_dimension_count(HEAD_SIZE)
    writer.add_rope_dimension_sections(list(ROPE_SECTIONS))
    writer.add_rope_freq_base(10_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_full_attention_interval(FULL_ATTENTION_INTERVAL)
    writer.add_ssm_conv_kernel(CONV_KERNEL)
    writer.add_ssm_inner_size(LINEAR_VALUE_HEADS * LINEAR_HEAD_SIZE)
    writer.add_ssm_state_size(LINEAR_HEAD_SIZE)
    writer.add_ssm_time_step_rank(LINEAR_VALUE_HEADS)
    writer.add_ssm_group_count(LINEAR_KEY_HEADS)
    plain_model._add_tokenizer(writer, vocabulary)
    writer.add_chat_template(plain_model.chat_template())
    for name, tensor in _weights(len(vocabulary.tokens)):
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _weights(vocabulary_size: int) -> list[tuple[str, np.ndarray]]:
    """Random tensors in the shapes llama.cpp's qwen35 loader asks for (numpy order: out, in)."""
    random = np.random.default_rng(SEED)

    def normal(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (random.standard_normal(shape) * scale).astype(np.float32)

    def ones(size: int) -> np.ndarray:
        return np.ones(size, dtype=np.float32)

    kv_width = KV_HEADS * HEAD_SIZE
    key_dim = LINEAR_KEY_HEADS * LINEAR_HEAD_SIZE
    value_dim = LINEAR_VALUE_HEADS * LINEAR_HEAD_SIZE
    conv_dim = 2 * key_dim + value_dim
    tensors = [
        ("token_embd.weight", normal(vocabulary_size, EMBEDDING, scale=1.0)),
        ("output_norm.weight", ones(EMBEDDING)),
        ("output.weight", normal(vocabulary_size, EMBEDDING, scale=0.3)),
    ]
    for layer in range(LAYERS):
        prefix = f"blk.{layer}"
        tensors += [
            (f"{prefix}.attn_norm.weight", ones(EMBEDDING)),
            (f"{prefix}.post_attention_norm.weight", ones(EMBEDDING)),
        ]
        if is_recurrent(layer):
            tensors += [
                (f"{prefix}.attn_qkv.weight", normal(conv_dim, EMBEDDING)),
                (f"{prefix}.attn_gate.weight", normal(value_dim, EMBEDDING)),
                (f"{prefix}.ssm_conv1d.weight", normal(conv_dim, CONV_KERNEL, scale=0.2)),
                (f"{prefix}.ssm_dt.bias", np.zeros(LINEAR_VALUE_HEADS, dtype=np.float32)),
                # A = -exp(A_log): negative decay rates, as the converter stores them.
                (f"{prefix}.ssm_a", -np.ones(LINEAR_VALUE_HEADS, dtype=np.float32)),
                (f"{prefix}.ssm_beta.weight", normal(LINEAR_VALUE_HEADS, EMBEDDING)),
                (f"{prefix}.ssm_alpha.weight", normal(LINEAR_VALUE_HEADS, EMBEDDING)),
                (f"{prefix}.ssm_norm.weight", ones(LINEAR_HEAD_SIZE)),
                (f"{prefix}.ssm_out.weight", normal(EMBEDDING, value_dim)),
            ]
        else:
            tensors += [
                # The query projection also yields the output gate: twice the heads' width.
                (f"{prefix}.attn_q.weight", normal(2 * HEADS * HEAD_SIZE, EMBEDDING)),
                (f"{prefix}.attn_k.weight", normal(kv_width, EMBEDDING)),
                (f"{prefix}.attn_v.weight", normal(kv_width, EMBEDDING)),
                (f"{prefix}.attn_q_norm.weight", ones(HEAD_SIZE)),
                (f"{prefix}.attn_k_norm.weight", ones(HEAD_SIZE)),
                (f"{prefix}.attn_output.weight", normal(EMBEDDING, HEADS * HEAD_SIZE)),
            ]
        tensors += [
            (f"{prefix}.ffn_gate.weight", normal(FEED_FORWARD, EMBEDDING)),
            (f"{prefix}.ffn_up.weight", normal(FEED_FORWARD, EMBEDDING)),
            (f"{prefix}.ffn_down.weight", normal(EMBEDDING, FEED_FORWARD)),
        ]
    return tensors
