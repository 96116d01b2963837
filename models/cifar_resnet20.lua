-- cifar_resnet20.lua: the CIFAR ResNet-20 of He et al. (2016): 3x3 stem with 16 channels, three
-- stages of 3 basic blocks with 16, 32 and 64 channels, 1x1 projection shortcuts where the
-- shape changes, global average pool, fully connected.
return cifar_resnet { depth = 20 }
