-- resnet34.lua: ResNet-34 in torchvision's topology: 7x7/2 stem, BN, ReLU, 3x3/2 max pool,
-- basic blocks per stage { 3, 4, 6, 3 }, global average pool, fully connected.
return resnet { block = "basic", layers = { 3, 4, 6, 3 } }
