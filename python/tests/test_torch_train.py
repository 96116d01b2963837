"""test_torch_train.py - a converted CIFAR-style ResNet-8 (f=2) trains with
torch.optim.SGD on the host backend: over 12 steps on one fixed batch the loss falls below
half its start; and a 2-process DistributedDataParallel run (gloo, CPU) of the converted
model completes, with the parameters bit-identical on both ranks after every step."""
import os
import socket
import sys
import tempfile
import unittest

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import poolprop.torch as pt
from common import LIB, SmallResNet

BATCH, SIZE = 16, 16


def batch(seed, n=BATCH):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    # A learnable pattern: each class brightens its own channel and quadrant.
    x = 0.5 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    for i, c in enumerate(labels.tolist()):
        x[i, c % 3, (c // 3 % 2) * 8:(c // 3 % 2) * 8 + 8, (c // 6) * 8:(c // 6) * 8 + 8] += 1.5
    return x, labels


class TrainTest(unittest.TestCase):
    def test_loss_falls(self):
        torch.manual_seed(0)
        model = SmallResNet()
        report = pt.convert(model, "2", backend="host")
        self.assertEqual(len([r for r in report.replaced if "PooledConv2d" in r[1]]), 9)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, labels = batch(1)
        losses = []
        for _ in range(12):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print("\nlosses: " + " ".join(f"{v:.3f}" for v in losses))
        self.assertTrue(all(v == v for v in losses), "a NaN loss")
        self.assertLess(losses[-1], 0.5 * losses[0])


def _ddp_worker(rank, world, port, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = SmallResNet()
    pt.convert(model, "2", backend="host")
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    identical_steps = 0
    for step in range(3):
        x, labels = batch(100 + step * world + rank, BATCH // world)  # each rank its own shard
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), labels).backward()
        optimizer.step()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        identical_steps += all(torch.equal(gathered[0], g) for g in gathered)
    with open(os.path.join(result_dir, f"rank{rank}"), "w") as f:
        f.write(f"{identical_steps}\n")
    dist.destroy_process_group()


class DistributedTest(unittest.TestCase):
    def test_two_process_ddp(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with tempfile.TemporaryDirectory() as result_dir:
            mp.spawn(_ddp_worker, args=(2, port, result_dir), nprocs=2, join=True)
            for rank in range(2):
                with open(os.path.join(result_dir, f"rank{rank}")) as f:
                    self.assertEqual(f.read().strip(), "3", f"rank {rank}: parameters differed after a step")
        print("\nDDP, 2 processes (gloo): parameters bit-identical on both ranks after each of 3 steps")


if __name__ == "__main__":
    if not LIB:
        sys.exit("POOLPROP_LIB is not set (CTest sets it)")
    unittest.main(verbosity=2)
