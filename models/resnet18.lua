-- resnet18.lua: ResNet-18 in torchvision's topology: 7x7/2 stem, BN, ReLU, 3x3/2 max pool,
-- basic blocks per stage { 2, 2, 2, 2 }, global average pool, fully connected.
return resnet { block = "basic", layers = { 2, 2, 2, 2 } }
