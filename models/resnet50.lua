-- resnet50.lua: ResNet-50 in torchvision's topology: 7x7/2 stem, BN, ReLU, 3x3/2 max pool,
-- bottleneck blocks per stage { 3, 4, 6, 3 }, global average pool, fully connected.
return resnet { block = "bottleneck", layers = { 3, 4, 6, 3 } }
