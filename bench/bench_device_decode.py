"""Loader images/s with CPU workers (PIL + train_transform) vs device decoding (bytes + DevicePipeline), against
EfficientNetV2-S training images/s (AMP, bf16, channels_last), per image size (paper section 4: the stage sizes).

    python bench_device_decode.py --data-root /data/imagenet --dataset imagenet --workers 16 --batch 256
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch.utils.data import BatchSampler, RandomSampler

from effnetv2_mini import build_model
from effnetv2_mini.argtypes import (
    data,
    image_size,
    model_name,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from effnetv2_mini.data.datasets import get_dataset
from effnetv2_mini.data.devicedecode import DevicePipeline, SeededEncoded, collate_encoded, encoded_images
from effnetv2_mini.data.loaders import SeededDataset, SeededSampler, make_loader, shutdown
from effnetv2_mini.data.transforms import train_transform

parser = argparse.ArgumentParser()
parser.add_argument("--data-root", required=True)
parser.add_argument("--dataset", default="imagenet", choices=("imagenet", "imagenette", "imagefolder"))
parser.add_argument("--model", type=model_name, default="efficientnetv2_s")
parser.add_argument("--sizes", type=image_size, nargs="+", default=[128, 192, 256])
parser.add_argument("--workers", type=non_negative_int, default=16)
parser.add_argument("--batch", type=positive_int, default=256)
parser.add_argument("--batches", type=positive_int, default=30,
                    help="timed batches per figure (after one warm-up batch)")
parser.add_argument("--magnitude", type=non_negative_float, default=10.0)
parser.add_argument("--device", default="cuda")
args = parser.parse_args()
data(parser, args.dataset, args.data_root)
device = torch.device(args.device)
train = get_dataset(args.dataset, "train", root=args.data_root, skip_corrupt=True)
encoded = SeededEncoded(encoded_images(train, skip_corrupt=True))
model = build_model(args.model, num_classes=1000).to(device, memory_format=torch.channels_last)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)


def sync() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(batches, step) -> float:
    """Images/s of ``step`` over ``args.batches`` batches, after one warm-up batch (worker start-up, cudnn)."""
    batches = iter(batches)
    step(next(batches))
    sync()
    start = time.perf_counter()
    seen = sum(step(next(batches)) for _ in range(args.batches))
    sync()
    return seen / (time.perf_counter() - start)


def train_step(images: torch.Tensor) -> int:
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(1000, (images.shape[0],), device=device)
    with torch.autocast(device.type, torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return images.shape[0]


def batches() -> BatchSampler:
    return BatchSampler(SeededSampler(RandomSampler(train, generator=torch.Generator().manual_seed(0)), 0), args.batch, True)


print(f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, {args.workers} workers, batch {args.batch}")
for size in args.sizes:
    train.transform = train_transform(size, args.magnitude)
    pipeline = DevicePipeline(size, args.magnitude, device=device)
    cpu = make_loader(SeededDataset(train), None, args.workers, device, batch_sampler=batches())
    gpu = make_loader(encoded, None, args.workers, device, batch_sampler=batches(), collate_fn=collate_encoded)
    memory = torch.randn(args.batch, 3, size, size, device=device)
    figures = {"loader, CPU workers": rate(cpu, lambda b: b[0].to(device, non_blocking=True).shape[0]),
               "loader, device decoding": rate(gpu, lambda b, p=pipeline: p(b[0]).shape[0]),
               "V2-S training from memory": rate(itertools.repeat(memory), train_step),
               "training, CPU workers": rate(cpu, lambda b: train_step(b[0])),
               "training, device decoding": rate(gpu, lambda b, p=pipeline: train_step(p(b[0])))}
    shutdown(cpu)
    shutdown(gpu)
    print(f"{size} px: " + ", ".join(f"{name} {value:.0f} img/s" for name, value in figures.items()), flush=True)
