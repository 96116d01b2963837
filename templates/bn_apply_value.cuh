// bn_apply_value.cuh - the value batch-norm apply writes for one element, shared by
// bn_apply.cu (one element per thread) and bn_apply_pool.cu (whole pooling windows per
// thread), so both write bitwise the same x for the same inputs.
//   out = g*((y - m)*s) + b  (+ res if ADD),  then ReLU if RELU (a NaN stays NaN, as torch.relu)
// m, s: the channel's mean and 1/std; g, b: its gamma and beta; res: the residual element
// (not read without ADD).
// Generator constants: RELU ADD
__device__ __forceinline__ float bn_apply_value(float y, float m, float s, float g, float b, float res)
{
    float v = g * ((y - m) * s) + b;
    if (ADD) v += res;
    if (RELU) v = v < 0.0f ? 0.0f : v;
    return v;
}
