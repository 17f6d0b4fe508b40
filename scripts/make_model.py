#!/usr/bin/env python3
"""Generate a small, real diffusers-style model folder and (optionally) its wanfs manifest.

The folder holds JSON configs and sharded .safetensors files with deterministic tensors,
so a reader through the mount can be checked against the original. The manifest entry
carries sizes, sha256 and chunk digests measured from the files written.

    make_model.py DIR [--shards 2] [--shard-mib 8] [--tensor-mib 4] [--layout uniform|wan]
                      [--manifest models.toml --model-id demo@1.0.0 --source local://...]
                      [--chunk-mib 4]

--layout uniform (the default): float32 tensors of --tensor-mib each plus one float16 bias per
shard, written in numeric order (blocks.0, blocks.1, ..., blocks.10) while loaders ask in name
order (blocks.0, blocks.1, blocks.10, ...): as in real checkpoints, the file's order is not
the loader's.

--layout wan: the tensors of Wan2.1-T2V-1.3B's transformer as diffusers saves it (the same
names and shapes: 4.5 MiB attention weights, 26 MiB feed-forward weights, small biases and
norms; float16, as large as its bfloat16), with as many of its 30 blocks as fit in
--shards x --shard-mib, shards filled in block order and each written in name order, as
safetensors' own writer does for a single dtype.
"""
import argparse
import hashlib
import json
import os
import struct

import numpy as np


def write_safetensors(path, tensors):
    """Writes {name: np.ndarray} in the safetensors format (header length, JSON header, data)."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtypes[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # 8-byte alignment, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def make_model(root, shards, shard_mib, seed=2025, tensor_mib=4):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "transformer"), exist_ok=True)
    with open(os.path.join(root, "model_index.json"), "w") as f:
        json.dump({"_class_name": "WanPipeline", "_diffusers_version": "0.35.0",
                   "transformer": ["diffusers", "WanTransformer3DModel"]}, f, indent=2)
    with open(os.path.join(root, "transformer", "config.json"), "w") as f:
        json.dump({"_class_name": "WanTransformer3DModel", "num_layers": shards * 4, "hidden_size": 1024}, f, indent=2)

    weight_map = {}
    tensor_bytes = tensor_mib * 1024 * 1024  # float32 tensors of tensor_mib MiB
    per_shard = max(1, (shard_mib * 1024 * 1024) // tensor_bytes)
    for s in range(shards):
        name = f"diffusion_pytorch_model-{s + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {}
        for t in range(per_shard):
            key = f"blocks.{s * per_shard + t}.attn.weight"
            tensors[key] = rng.standard_normal(tensor_bytes // 4, dtype=np.float32).reshape(1024, -1)
            weight_map[key] = name
        tensors[f"blocks.{s}.norm.bias"] = rng.standard_normal(1000, dtype=np.float32).astype(np.float16)
        weight_map[f"blocks.{s}.norm.bias"] = name
        write_safetensors(os.path.join(root, "transformer", name), tensors)
    with open(os.path.join(root, "transformer", "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)


def wan_tensors(blocks):
    """(name, shape) of Wan2.1-T2V-1.3B's transformer with `blocks` blocks, grouped by block
    (None: the tensors outside the blocks), as diffusers names them."""
    dim, ffn, text, freq, out = 1536, 8960, 4096, 256, 64
    top = [("condition_embedder.text_embedder.linear_1.weight", (dim, text)), ("condition_embedder.text_embedder.linear_1.bias", (dim,)),
           ("condition_embedder.text_embedder.linear_2.weight", (dim, dim)), ("condition_embedder.text_embedder.linear_2.bias", (dim,)),
           ("condition_embedder.time_embedder.linear_1.weight", (dim, freq)), ("condition_embedder.time_embedder.linear_1.bias", (dim,)),
           ("condition_embedder.time_embedder.linear_2.weight", (dim, dim)), ("condition_embedder.time_embedder.linear_2.bias", (dim,)),
           ("condition_embedder.time_proj.weight", (6 * dim, dim)), ("condition_embedder.time_proj.bias", (6 * dim,)),
           ("patch_embedding.weight", (dim, 16, 1, 2, 2)), ("patch_embedding.bias", (dim,)),
           ("proj_out.weight", (out, dim)), ("proj_out.bias", (out,)), ("scale_shift_table", (1, 2, dim))]
    groups = [(None, top)]
    for b in range(blocks):
        p = f"blocks.{b}."
        block = []
        for attn in ("attn1", "attn2"):
            block += [(p + f"{attn}.norm_k.weight", (dim,)), (p + f"{attn}.norm_q.weight", (dim,))]
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                block += [(p + f"{attn}.{proj}.weight", (dim, dim)), (p + f"{attn}.{proj}.bias", (dim,))]
        block += [(p + "ffn.net.0.proj.weight", (ffn, dim)), (p + "ffn.net.0.proj.bias", (ffn,)),
                  (p + "ffn.net.2.weight", (dim, ffn)), (p + "ffn.net.2.bias", (dim,)),
                  (p + "norm2.weight", (dim,)), (p + "norm2.bias", (dim,)), (p + "scale_shift_table", (1, 6, dim))]
        groups.append((b, block))
    return groups


def make_wan_model(root, shards, shard_mib, seed=2025):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "transformer"), exist_ok=True)
    elements = lambda shape: int(np.prod(shape))
    per_block = sum(2 * elements(shape) for _, shape in wan_tensors(1)[1][1])
    outside = sum(2 * elements(shape) for _, shape in wan_tensors(0)[0][1])
    blocks = max(1, min(30, (shards * shard_mib * 1024 * 1024 - outside) // per_block))
    with open(os.path.join(root, "model_index.json"), "w") as f:
        json.dump({"_class_name": "WanPipeline", "_diffusers_version": "0.35.0",
                   "transformer": ["diffusers", "WanTransformer3DModel"]}, f, indent=2)
    with open(os.path.join(root, "transformer", "config.json"), "w") as f:
        json.dump({"_class_name": "WanTransformer3DModel", "num_layers": blocks, "num_attention_heads": 12,
                   "attention_head_dim": 128, "ffn_dim": 8960, "text_dim": 4096, "freq_dim": 256,
                   "in_channels": 16, "out_channels": 16, "patch_size": [1, 2, 2]}, f, indent=2)
    groups = wan_tensors(blocks)
    if shards > len(groups):
        raise SystemExit(f"make_model: --shards {shards} is more than the {len(groups)} groups of tensors (blocks and the rest) "
                         f"that fit in {shards} x {shard_mib} MiB")
    per_shard = -(-len(groups) // shards)
    weight_map = {}
    for s in range(shards):
        name = f"diffusion_pytorch_model-{s + 1:05d}-of-{shards:05d}.safetensors"
        chosen = sorted(t for _, tensors in groups[s * per_shard:(s + 1) * per_shard] for t in tensors)
        tensors = {key: rng.standard_normal(elements(shape), dtype=np.float32).astype(np.float16).reshape(shape)
                   for key, shape in chosen}
        weight_map.update({key: name for key in tensors})
        write_safetensors(os.path.join(root, "transformer", name), tensors)
    with open(os.path.join(root, "transformer", "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)


def describe(root, chunk_size):
    """(path, size, sha256, chunk digests) for every file under root, sorted by path."""
    entries = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            whole, chunks = hashlib.sha256(), []
            with open(full, "rb") as f:
                while block := f.read(chunk_size):
                    whole.update(block)
                    chunks.append(hashlib.sha256(block).hexdigest())
            entries.append((os.path.relpath(full, root), os.path.getsize(full), whole.hexdigest(), chunks))
    return sorted(entries)


def manifest_entry(model_id, sources, entries, chunk_size):
    lines = [f'[models."{model_id}"]', f'description = "generated by scripts/make_model.py"', ""]
    for path, size, digest, chunks in entries:
        lines += [f'[[models."{model_id}".files]]', f'path = "{path}"', f"size = {size}", f'sha256 = "{digest}"']
        if chunk_size and size > chunk_size:
            lines += [f"chunk_size = {chunk_size}", "chunks = ["] + [f'    "{c}",' for c in chunks] + ["]"]
        lines.append("")
    lines += [f'[models."{model_id}".sources]', "priority = [" + ", ".join(f'"{s}"' for s in sources) + "]", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--shard-mib", type=int, default=8)
    parser.add_argument("--manifest")
    parser.add_argument("--model-id", default="demo@1.0.0")
    parser.add_argument("--source", action="append", default=[])
    parser.add_argument("--chunk-mib", type=int, default=4, help="chunk digest size (0: none, whole-file sha256 only)")
    parser.add_argument("--tensor-mib", type=int, default=4, help="size of each weight tensor (--layout uniform)")
    parser.add_argument("--layout", choices=["uniform", "wan"], default="uniform",
                        help="uniform tensors, or the tensors of Wan2.1-T2V-1.3B's transformer")
    args = parser.parse_args()
    if args.tensor_mib < 1:
        parser.error("--tensor-mib must be at least 1")

    if args.layout == "wan":
        make_wan_model(args.dir, args.shards, args.shard_mib)
    else:
        make_model(args.dir, args.shards, args.shard_mib, tensor_mib=args.tensor_mib)
    if args.manifest:
        chunk_size = args.chunk_mib * 1024 * 1024  # 0: no chunk digests
        entries = describe(args.dir, chunk_size or 4 * 1024 * 1024)
        with open(args.manifest, "w") as f:
            f.write("schema_version = 1\n\n" + manifest_entry(args.model_id, args.source, entries, chunk_size))
        total = sum(e[1] for e in entries)
        print(f"make_model: {len(entries)} files, {total} bytes; manifest {args.manifest}")


if __name__ == "__main__":
    main()
