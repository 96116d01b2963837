-- layers_default.lua: the default layer set of `poolprop verify`: one of each kind of
-- convolution a ResNet has, at small batch and image sizes so that every kernel can be
-- checked against the C reference on the host emulation backend in seconds, with every
-- pooling factor and both pooling modes.
layer { name = "cifar_stem",      N = 2, C = 3,  H = 32, W = 32, K = 16, R = 3, S = 3, stride = 1, pad = 1, pool = 1 }
layer { name = "cifar_block",     N = 2, C = 16, H = 32, W = 32, K = 16, R = 3, S = 3, stride = 1, pad = 1, pool = 2 }
layer { name = "cifar_down",      N = 2, C = 16, H = 32, W = 32, K = 32, R = 3, S = 3, stride = 2, pad = 1, pool = 2,
        pool_mode = "max" }
layer { name = "cifar_proj",      N = 2, C = 16, H = 32, W = 32, K = 32, R = 1, S = 1, stride = 2, pad = 0, pool = 4 }
layer { name = "resnet_stem",     N = 1, C = 3,  H = 56, W = 56, K = 32, R = 7, S = 7, stride = 2, pad = 3, pool = 4 }
layer { name = "bottleneck_1x1",  N = 2, C = 64, H = 14, W = 14, K = 32, R = 1, S = 1, stride = 1, pad = 0, pool = 2 }
layer { name = "bottleneck_3x3",  N = 2, C = 32, H = 14, W = 14, K = 32, R = 3, S = 3, stride = 1, pad = 1, pool = 2 }
layer { name = "odd_shape",       N = 3, C = 5,  H = 13, W = 11, K = 7,  R = 3, S = 3, stride = 2, pad = 2, pool = 8,
        pool_mode = "max" }
