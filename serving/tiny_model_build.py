"""Build a random-weight Qwen3 model with a locally trained tokenizer (run with the engine's Python).

A stand-in that exercises a real engine without a download: its output is random
text, it is not a model to evaluate. Deterministic for a given corpus and seed.
Needs torch, transformers and tokenizers (all in the vLLM venv); imports nothing
from llmcap so it runs there as a plain script:

    .engine/venv/bin/python serving/tiny_model_build.py --out DIR --corpus prompts.txt

`--shape qwen3-4b` builds Qwen3-4B's architecture (its config, 4.0 B parameters, its
151,936-token vocabulary: the tokenizer is padded with placeholder tokens up to it), on
the GPU when there is one; `--fp8-out DIR` also writes a copy with FP8 weights
(transformers' fine-grained FP8, 128x128 blocks, as Qwen's own FP8 checkpoints).
"""

import argparse
import json
import os
from pathlib import Path

# A ChatML template that renders tools the way Qwen3's own template does, so
# function-calling prompts have realistic token counts.
CHAT_TEMPLATE = r"""{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
{%- for tool in tools %}{{- "\n" }}{{- tool | tojson }}{%- endfor %}
{{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\n' }}
{%- if message.content %}{{- message.content }}{%- endif %}
{%- if message.tool_calls %}
{%- for tool_call in message.tool_calls %}
{%- set fn = tool_call.function if tool_call.function else tool_call %}
{{- '\n<tool_call>\n{"name": "' + fn.name + '", "arguments": ' }}
{%- if fn.arguments is string %}{{- fn.arguments }}{%- else %}{{- fn.arguments | tojson }}{%- endif %}
{{- '}\n</tool_call>' }}
{%- endfor %}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"""

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

# Qwen3-4B's config.json (Qwen/Qwen3-4B), the fields that set its size and speed
QWEN3_4B = dict(
    vocab_size=151936,
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
)
TINY = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=8192,
)
SHAPES: dict[str, dict] = {"tiny": TINY, "qwen3-4b": QWEN3_4B}


def build(
    out: Path, corpus: Path, seed: int, vocab_size: int, shape: str = "tiny", fp8_out: Path | None = None
) -> dict:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    texts = [t for t in corpus.read_text(encoding="utf-8").split("\n\x1e\n") if t.strip()]
    if not texts:
        raise SystemExit(f"{corpus}: no text to train the tokenizer on")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(sorted(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    dims = dict(SHAPES[shape])
    if "vocab_size" in dims:
        # every id the model can emit decodes to text, so streamed chunks keep coming
        fast.add_tokens([f"<|pad_{i}|>" for i in range(dims["vocab_size"] - len(fast))])
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)

    vocab = dims.pop("vocab_size", (len(fast) + 63) // 64 * 64)
    config = Qwen3Config(
        vocab_size=vocab,
        **dims,
        tie_word_embeddings=True,
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(seed)
    if shape == "tiny":
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    else:  # 4 B parameters initialise in seconds on a GPU, in bf16 to halve the memory
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = Qwen3ForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    lengths = sorted(len(fast(t)["input_ids"]) for t in texts)
    info = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": vocab,
        "corpus_texts": len(texts),
        "median_corpus_tokens": lengths[len(lengths) // 2],
        "seed": seed,
        "shape": shape,
        "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "note": "random weights: a stand-in to exercise a serving engine, not a model to evaluate",
    }
    (out / "llmcap_tiny_model.json").write_text(json.dumps(info, indent=1))
    if fp8_out is not None:
        del model
        info["fp8"] = write_fp8_copy(out, fp8_out)
    return info


def write_fp8_copy(src: Path, dst: Path) -> dict:
    """The same weights quantized to FP8 on load (transformers' FineGrainedFP8Config) and saved."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, FineGrainedFP8Config

    model = AutoModelForCausalLM.from_pretrained(
        src, dtype=torch.bfloat16, device_map="cuda", quantization_config=FineGrainedFP8Config()
    )
    model.save_pretrained(dst, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "llmcap_tiny_model.json"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    weights = sum(f.stat().st_size for f in dst.glob("*.safetensors"))
    del model
    torch.cuda.empty_cache()
    return {"dir": str(dst), "weights_file_bytes": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--corpus", required=True, type=Path, help="texts separated by a line holding \\x1e")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=4096, help="the trained tokenizer's size")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--fp8-out", type=Path, help="also write an FP8-weights copy here (needs a GPU)")
    args = parser.parse_args()
    print(json.dumps(build(args.out, args.corpus, args.seed, args.vocab_size, args.shape, args.fp8_out)))


if __name__ == "__main__":
    main()
