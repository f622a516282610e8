"""A tiny Qwen3-architecture GGUF with random weights, a byte-level vocabulary and Qwen's template.

It answers gibberish (any byte, NUL and control bytes included) quickly on one CPU core, which is
what the real-server tests want: llama.cpp's own streaming, slots, limits and errors, not sense.
The file is byte-for-byte deterministic and cached by a name that carries its recipe's digest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from devtools.llamacpp import vocab
from devtools.llamacpp.cache import cache_root, ensure_written, recipe_digest
from devtools.llamacpp.vocab import Vocabulary, build_vocabulary

if TYPE_CHECKING:
    import gguf

ARCHITECTURE = "qwen3"
EMBEDDING = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_SIZE = EMBEDDING // HEADS
FEED_FORWARD = 128
TRAINED_CONTEXT = 32768  # room for the long generations the slot tests cancel
SEED = 20260101

CHAT_TEMPLATE_PATH = Path(__file__).with_name("qwen3_chat_template.jinja")


def chat_template() -> str:
    """Qwen3's chat template (ChatML with <tool_call> and <think>)."""
    return CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")


def model_path() -> Path:
    """Where the model for the current recipe lives in the cache (it may not exist yet): the
    recipe is this code, the vocabulary's code and the template."""
    digest = recipe_digest((Path(__file__), Path(vocab.__file__), CHAT_TEMPLATE_PATH))
    return cache_root() / "models" / f"tiny-qwen3-{digest}.gguf"


def ensure_model() -> Path:
    """Return the cached model, writing it first if it is missing."""
    return ensure_written(model_path(), write_model)


def write_model(path: Path) -> None:
    """Write the tiny model to `path`."""
    import gguf  # only the model writer needs it

    vocabulary = build_vocabulary()
    writer = gguf.GGUFWriter(str(path), ARCHITECTURE)
    writer.add_name("orchestrator-tiny-qwen3")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(TRAINED_CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_SIZE)
    writer.add_value_length(HEAD_SIZE)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    _add_tokenizer(writer, vocabulary)
    writer.add_chat_template(chat_template())
    for name, tensor in _weights(len(vocabulary.tokens)):
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_tokenizer(writer: gguf.GGUFWriter, vocabulary: Vocabulary) -> None:
    end_of_turn = vocabulary.token_id("<|im_end|>")
    end_of_text = vocabulary.token_id("<|endoftext|>")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(list(vocabulary.tokens))
    writer.add_token_types(list(vocabulary.types))
    writer.add_token_merges(list(vocabulary.merges))
    writer.add_bos_token_id(end_of_text)
    writer.add_eos_token_id(end_of_turn)
    writer.add_pad_token_id(end_of_text)
    writer.add_add_bos_token(False)


def _weights(vocabulary_size: int) -> list[tuple[str, np.ndarray]]:
    """Random tensors in the shapes llama.cpp's qwen3 loader asks for (numpy order: out, in)."""
    random = np.random.default_rng(SEED)

    def normal(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (random.standard_normal(shape) * scale).astype(np.float32)

    def ones(size: int) -> np.ndarray:
        return np.ones(size, dtype=np.float32)

    kv_width = KV_HEADS * HEAD_SIZE
    tensors = [
        # Embeddings large enough that the logits are not flat: sampling then favours some
        # tokens, as a real model does, but every token stays reachable.
        ("token_embd.weight", normal(vocabulary_size, EMBEDDING, scale=1.0)),
        ("output_norm.weight", ones(EMBEDDING)),
        ("output.weight", normal(vocabulary_size, EMBEDDING, scale=0.3)),
    ]
    for layer in range(LAYERS):
        prefix = f"blk.{layer}"
        tensors += [
            (f"{prefix}.attn_norm.weight", ones(EMBEDDING)),
            (f"{prefix}.attn_q.weight", normal(HEADS * HEAD_SIZE, EMBEDDING)),
            (f"{prefix}.attn_k.weight", normal(kv_width, EMBEDDING)),
            (f"{prefix}.attn_v.weight", normal(kv_width, EMBEDDING)),
            (f"{prefix}.attn_q_norm.weight", ones(HEAD_SIZE)),
            (f"{prefix}.attn_k_norm.weight", ones(HEAD_SIZE)),
            (f"{prefix}.attn_output.weight", normal(EMBEDDING, HEADS * HEAD_SIZE)),
            (f"{prefix}.ffn_norm.weight", ones(EMBEDDING)),
            (f"{prefix}.ffn_gate.weight", normal(FEED_FORWARD, EMBEDDING)),
            (f"{prefix}.ffn_up.weight", normal(FEED_FORWARD, EMBEDDING)),
            (f"{prefix}.ffn_down.weight", normal(EMBEDDING, FEED_FORWARD)),
        ]
    return tensors
