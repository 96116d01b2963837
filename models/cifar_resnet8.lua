-- cifar_resnet8.lua: the smallest CIFAR ResNet (one basic block per stage), for fast tests.
return cifar_resnet { depth = 8 }
