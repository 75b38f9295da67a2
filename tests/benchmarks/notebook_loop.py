"""The notebook's phase: full InceptionV1, forward hook on mixed4a, heap of top-10.

Usage: python tests/benchmarks/notebook_loop.py DATA_DIR [batch] [workers] [device]
The code is the notebook's, with random weights (no network here) and no bar.
"""

import heapq
import sys

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from pipeline.model import load_model

root = sys.argv[1]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
device = torch.device(sys.argv[4] if len(sys.argv) > 4 else "cpu")
model = load_model("random")[0].to(device)
activation = {}
model.mixed4a.register_forward_hook(lambda m, i, o: activation.__setitem__("mixed4a", o.detach()))
preprocess = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
dataset = datasets.ImageFolder(root, transform=preprocess)
dataloader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers)
NUM_CHANNELS, TOP_K = 10, 10
top_images = {ch: [] for ch in range(NUM_CHANNELS)}
counter = 0
with torch.no_grad():
    for images, _ in dataloader:
        model((images * 255 - 117).to(device))
        acts = activation["mixed4a"]
        for i in range(images.size(0)):
            for ch in range(NUM_CHANNELS):
                act_val = acts[i, ch].mean().item()
                entry = (act_val, counter, images[i].cpu())
                if len(top_images[ch]) < TOP_K:
                    heapq.heappush(top_images[ch], entry)
                elif act_val > top_images[ch][0][0]:
                    heapq.heapreplace(top_images[ch], entry)
                counter += 1
print(len(dataset))
