// sgd.cu - SGD with momentum and weight decay (PyTorch torch.optim.SGD, dampening 0, not
// Nesterov), one element per thread, over the flat parameter array.
//   params, grads, momentum_buf: (COUNT)  lr, momentum, weight_decay: scalars (by value)
//   d = grad + weight_decay*param;  buf = momentum*buf + d;  param -= lr*buf
// momentum_buf starts at zero, which makes the first step's buf = d, as PyTorch's.
// Generator constants: COUNT THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(float *__restrict__ params, const float *__restrict__ grads, float *__restrict__ momentum_buf,
          float lr, float momentum, float weight_decay)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= COUNT) return;
    const float p = params[i];
    const float d = grads[i] + weight_decay * p;
    const float buf = momentum * momentum_buf[i] + d;
    momentum_buf[i] = buf;
    params[i] = p - lr * buf;
}
PP_KERNEL_EXPORT(${KERNEL})
