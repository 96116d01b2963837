// sgd.cu - SGD with momentum and weight decay (PyTorch torch.optim.SGD, dampening 0, not
// Nesterov), one element per thread, over the flat parameter array.
//   params, grads, momentum_buf: (COUNT) float  lr, momentum, weight_decay: scalars (by value)
//   d = grad + weight_decay*param;  buf = momentum*buf + d;  param -= lr*buf  (sgd_step.cuh)
// momentum_buf starts at zero, which makes the first step's buf = d, as PyTorch's.
// sgd_shadow.cu is the form that also writes the bf16 copy of the updated weights.
// Generator constants: COUNT THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(float *__restrict__ params, const float *__restrict__ grads, float *__restrict__ momentum_buf,
          float lr, float momentum, float weight_decay)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= COUNT) return;
    sgd_step(params, grads, momentum_buf, i, lr, momentum, weight_decay);
}
PP_KERNEL_EXPORT(${KERNEL})
