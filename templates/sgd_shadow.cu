// sgd_shadow.cu - sgd.cu (op sgd with SHADOW = 1) that also writes the bf16 shadow of the
// updated weights, the copy that convolution kernels with bf16 storage read; one element
// per thread, over the flat parameter array.
//   params, grads, momentum_buf: (COUNT) float (the fp32 master weights and their state)
//   shadow: (COUNT) bf16 bits  lr, momentum, weight_decay: scalars (by value)
//   params, momentum_buf: bitwise sgd.cu's update (sgd_step.cuh)
//   shadow[i] = params[i] after the update, rounded to bf16 (nearest even)
// Generator constants: COUNT THREADS
// Launch: grid (ceil(COUNT/THREADS)), block (THREADS).
extern "C" __global__ void __launch_bounds__(THREADS)
${KERNEL}(float *__restrict__ params, const float *__restrict__ grads, float *__restrict__ momentum_buf,
          unsigned short *__restrict__ shadow, float lr, float momentum, float weight_decay)
{
    const int i = blockIdx.x * THREADS + threadIdx.x;
    if (i >= COUNT) return;
    shadow[i] = bf16_round(sgd_step(params, grads, momentum_buf, i, lr, momentum, weight_decay));
}
PP_KERNEL_EXPORT(${KERNEL})
