// sgd_step.cuh - one parameter's SGD step with momentum and weight decay (PyTorch
// torch.optim.SGD, dampening 0, not Nesterov), shared by sgd.cu and sgd_shadow.cu so that
// both update params and momentum_buf with bitwise the same arithmetic.
//   d = grad + weight_decay*param;  buf = momentum*buf + d;  param -= lr*buf
// Element i of params, grads, momentum_buf (float); returns the new param.
__device__ __forceinline__ float sgd_step(float *__restrict__ params, const float *__restrict__ grads,
                                          float *__restrict__ momentum_buf, int i, float lr, float momentum,
                                          float weight_decay)
{
    const float p = params[i];
    const float d = grads[i] + weight_decay * p;
    const float buf = momentum * momentum_buf[i] + d;
    momentum_buf[i] = buf;
    const float updated = p - lr * buf;
    params[i] = updated;
    return updated;
}
