-- cifar_resnet56.lua: the CIFAR ResNet-56 of He et al. (2016): 3x3 stem with 16 channels, three
-- stages of 9 basic blocks with 16, 32 and 64 channels, 1x1 projection shortcuts where the
-- shape changes, global average pool, fully connected.
return cifar_resnet { depth = 56 }
