"""common.py - what poolprop.torch's tests share: the library and CLI paths CTest passes,
float64 comparisons, and a small CIFAR-style ResNet written in plain torch."""
import os
import unittest

import torch

LIB = os.environ.get("POOLPROP_LIB")
CLI = os.environ.get("POOLPROP_CLI")


def relative_error(a, b):
    """||a - b|| / ||b||, in float64."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


class BasicBlock(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                  torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class SmallResNet(torch.nn.Module):
    """CIFAR ResNet-8 (one basic block per stage, 16/32/64 channels), torchvision names."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        self.relu = torch.nn.ReLU(inplace=True)
        self.layer1 = torch.nn.Sequential(BasicBlock(16, 16, 1))
        self.layer2 = torch.nn.Sequential(BasicBlock(16, 32, 2))
        self.layer3 = torch.nn.Sequential(BasicBlock(32, 64, 2))
        self.fc = torch.nn.Linear(64, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def require_library(test):
    if not LIB:
        raise unittest.SkipTest("POOLPROP_LIB is not set (CTest sets it)")
