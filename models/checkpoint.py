"""Checkpoint directories: Hugging Face encoder + tokenizer + heads + `fgrm.json` metadata.

This module is the file format only: reading and writing a checkpoint, never running one.
Runtimes (`models.runtime`) read checkpoints through it; `models.runtime.load` makes a loaded,
ready-to-score checkpoint.

Layout of a checkpoint directory:
  config.json, model.safetensors       the encoder (saved in fp16 to halve the repository size)
  tokenizer.json, tokenizer_config.json the tokenizer, with the [SEG] marker added
  heads.safetensors                     segment_head / sequence_head weights (fp32)
  fgrm.json                             heads, marker, max length, normalisation stats, training info
"""
from __future__ import annotations

import json
from pathlib import Path

META_FILE = "fgrm.json"
HEADS_FILE = "heads.safetensors"
# A checkpoint's `network` (fgrm.json): "reward" = a fine-tuned encoder with marker heads
# (models.network.RewardNetwork, weights in the directory); "embedding" = a frozen sentence
# encoder (models.network.EmbeddingNetwork) whose signals feed the small heads stored in
# fgrm.json (models.signal_model). An embedding checkpoint names its encoder instead of copying
# it: "package:NAME" is a Python package that ships the weights (verified by `encoder_sha256`).
NETWORKS = ("reward", "embedding")


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not an fgrm checkpoint (no {META_FILE})")
    try:
        return json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_file}: not valid JSON ({exc})") from None


def network_kind(meta: dict) -> str:
    kind = meta.get("network", "reward")
    if kind not in NETWORKS:
        raise ValueError(f"unknown network {kind!r} in {META_FILE}; expected one of {NETWORKS}")
    return kind


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: dict[str, str] = {}


def encoder_dir(path: str | Path, meta: dict | None = None) -> Path:
    """Where the encoder weights of checkpoint `path` are: the directory itself, or the package
    its fgrm.json names (checked against the pinned sha256 of its model.safetensors)."""
    path = Path(path)
    meta = read_meta(path) if meta is None else meta
    ref = meta.get("encoder")
    if not ref:
        return path
    if not ref.startswith("package:"):
        target = (path / ref).resolve()
    else:
        import importlib

        package = ref.split(":", 1)[1]
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise FileNotFoundError(f"{path}: its encoder is the package {package!r} ({META_FILE} 'encoder'), "
                                    "which is not installed") from None
        target = Path(module.get_model_path())
    want = meta.get("encoder_sha256")
    weights = target / "model.safetensors"
    if not weights.is_file():
        # a checkpoint trained with `fgrm train --backbone DIR` names DIR by absolute path: moved
        # to another machine, the encoder has to be put there too, or the name changed
        raise FileNotFoundError(f"{path}: its encoder ({META_FILE} 'encoder': {ref}) has no model.safetensors "
                                f"at {target}; put the encoder there, or set 'encoder' to its directory (absolute, "
                                "or relative to the checkpoint directory; 'encoder_sha256' still checks the weights)")
    if want and _verified.get(str(weights)) != want:
        got = sha256_file(weights)
        if got != want:
            raise ValueError(f"encoder {ref} at {target}: model.safetensors has sha256 {got[:12]}…, "
                             f"the checkpoint was trained on {want[:12]}…")
        _verified[str(weights)] = want
    return target


def check(path: str | Path) -> None:
    """Raise FileNotFoundError / ValueError, naming the file, when `path` is not a checkpoint the
    runtimes can load: no fgrm.json, an unknown network, encoder weights missing or not the pinned
    ones, or a reward network without its heads. Reads no more than that (callers check before
    they start work that a bad checkpoint would waste or loop on: `fgrm serve`, `fgrm eval`)."""
    path = Path(path)
    meta = read_meta(path)
    encoder_dir(path, meta)  # the weights, there and pinned
    if network_kind(meta) == "reward" and not (path / HEADS_FILE).is_file():
        raise FileNotFoundError(f"{path}: a reward checkpoint without {HEADS_FILE}")


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(encoder_dir(path)))


def load_network(path: str | Path, dtype=None):
    """The torch RewardNetwork of a checkpoint, in eval mode, fp32 unless `dtype` is given."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel

    from models.network import RewardNetwork

    path = Path(path)
    meta = read_meta(path)
    if network_kind(meta) == "embedding":
        from models.network import EmbeddingNetwork

        embedding = EmbeddingNetwork(AutoModel.from_pretrained(str(encoder_dir(path, meta)), dtype=torch.float32)).eval()
        return embedding.to(dtype) if dtype is not None else embedding
    try:  # BERT-like encoders: no pooler (never used; the saved checkpoint has none)
        encoder = AutoModel.from_pretrained(str(path), dtype=torch.float32, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler option (DistilBERT, ...)
        encoder = AutoModel.from_pretrained(str(path), dtype=torch.float32)
    net = RewardNetwork(encoder, meta["segment_heads"], meta["sequence_heads"])
    net.load_state_dict({k: v.float() for k, v in load_file(str(path / HEADS_FILE)).items()}, strict=False)
    net.eval()
    if dtype is not None:
        net = net.to(dtype)
    return net


def save_network(net, tokenizer, path: str | Path, meta: dict, fp16: bool = True) -> None:
    """Write a checkpoint directory (encoder in fp16 by default; heads fp32)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder = net.encoder
    # the pooler is unused (heads read token states) and load_network builds the encoder without it
    state = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous()
             for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    encoder.config.save_pretrained(str(path))
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    heads = {k: v.float().contiguous() for k, v in net.state_dict().items() if not k.startswith("encoder.")}
    save_file(heads, str(path / HEADS_FILE))
    tokenizer.save_pretrained(str(path))
    (path / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def reward_encoder(path: str | Path, meta: dict, use_passages: bool | None = None):
    """The `models.encoding.Encoder` of a reward-network checkpoint, as its fgrm.json configures it."""
    from models.encoding import Encoder

    return Encoder(load_tokenizer(path), int(meta["max_length"]),
                   meta.get("use_passages", True) if use_passages is None else use_passages,
                   meta.get("marker_token", "[SEG]"))
