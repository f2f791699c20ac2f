// Fused "prepare": decoded uint8 frames -> float32 model input, one launch per batch.
//
// For every output element (clip s, frame f, row y, column x, channel c) one thread
//   1. maps the output pixel to the source through the clip's 2x3 matrix
//      (xs, ys) = M @ (x, y, 1)   (fastvid/ops/affine.py: resize + augmentation),
//   2. clamps (xs, ys) into [0, w-1] x [0, h-1] (border "replicate", as
//      cv2.warpAffine BORDER_REPLICATE); with zero_outside, an output pixel whose
//      sample point lies beyond the picture's outer pixel edges is 0 (padding),
//   3. converts the 4 neighbouring source pixels to the output colour (RGB channel
//      c or gray; from RGB bytes or from I420 planes),
//   4. interpolates bilinearly and multiplies by `rescale`.
// Output layout (N, F, H, W, C), C = out_c = 3 (rgb) or 1 (gray).
//
// Inputs: all clips concatenated in `src`; clip s starts at byte clip_offset[s], has
// source size clip_size[2s] x clip_size[2s+1] (w x h) and F frames, each either
// h*w*3 RGB bytes or h*w*3/2 I420 bytes (Y plane, then U, then V at half
// resolution; w and h even).
//
// Plain CUDA C, no headers (NVRTC has none), no shared memory: see host_emulation.h.

// I420 -> RGB exactly as cv2.COLOR_YUV2RGB_I420 computes it (BT.601 limited range,
// nearest chroma): OpenCV's 20-bit fixed-point coefficients (1.164, 1.596, -0.813,
// -0.391, 2.018), luma floored at 16, rounded, clamped. Integer maths: the GPU, the
// emulation and cv2 give the same bytes, and the CPU backend samples those bytes too.
#define FV_YUV_SHIFT 20
#define FV_YUV_CY 1220542
#define FV_YUV_CVR 1673527
#define FV_YUV_CVG -852492
#define FV_YUV_CUG -409993
#define FV_YUV_CUB 2116026

// Colour of source pixel (x, y) of one frame, in [0, 255]: channel c (out_c == 3) or
// gray (out_c == 1).
__device__ __forceinline__ float fv_rgb_texel(const unsigned char* __restrict__ frame, int w,
                                              int x, int y, int c, int out_c) {
    const unsigned char* p = frame + 3 * ((long long)y * w + x);
    if (out_c == 3) return (float)p[c];
    return 0.299f * (float)p[0] + 0.587f * (float)p[1] + 0.114f * (float)p[2];
}

__device__ __forceinline__ float fv_i420_texel(const unsigned char* __restrict__ frame, int w,
                                               int h, int x, int y, int c, int out_c) {
    int luma = frame[(long long)y * w + x];
    if (out_c == 1) {
        // gray straight from luma: round(255/219 (Y - 16)), clamped (no ties occur)
        return fminf(fmaxf(rintf((255.0f / 219.0f) * (float)(luma - 16)), 0.0f), 255.0f);
    }
    long long plane = (long long)w * h;
    long long chroma = (long long)(y >> 1) * (w >> 1) + (x >> 1);  // the pixel's 2x2 block
    int u = (int)frame[plane + chroma] - 128;
    int v = (int)frame[plane + plane / 4 + chroma] - 128;
    int acc = max(luma - 16, 0) * FV_YUV_CY + (1 << (FV_YUV_SHIFT - 1));
    if (c == 0) {
        acc += FV_YUV_CVR * v;
    } else if (c == 1) {
        acc += FV_YUV_CVG * v + FV_YUV_CUG * u;
    } else {
        acc += FV_YUV_CUB * u;
    }
    return (float)min(max(acc >> FV_YUV_SHIFT, 0), 255);  // arithmetic shift: floor
}

__device__ __forceinline__ void fv_prepare(bool i420, const unsigned char* __restrict__ src,
                                           const long long* __restrict__ clip_offset,
                                           const int* __restrict__ clip_size,
                                           const float* __restrict__ mats, int n, int frames,
                                           int out_w, int out_h, int out_c, int zero_outside,
                                           float rescale, float* __restrict__ out) {
    long long total = (long long)n * frames * out_h * out_w * out_c;
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        long long r = i;
        int c = (int)(r % out_c);
        r /= out_c;
        int x = (int)(r % out_w);
        r /= out_w;
        int y = (int)(r % out_h);
        r /= out_h;
        int f = (int)(r % frames);
        int s = (int)(r / frames);

        int w = clip_size[2 * s];
        int h = clip_size[2 * s + 1];
        const float* m = mats + 6 * s;
        // The sample point, rounded the same way on every device: __fmul_rn/__fadd_rn
        // are never fused into an FMA, so GPU, emulation and NumPy reference agree.
        float fx = (float)x, fy = (float)y;
        float xs = __fadd_rn(__fadd_rn(__fmul_rn(m[0], fx), __fmul_rn(m[1], fy)), m[2]);
        float ys = __fadd_rn(__fadd_rn(__fmul_rn(m[3], fx), __fmul_rn(m[4], fy)), m[5]);
        if (zero_outside && (xs < -0.5f || xs > (float)w - 0.5f || ys < -0.5f ||
                             ys > (float)h - 0.5f)) {
            out[i] = 0.0f;  // padding around the picture
            continue;
        }
        xs = fminf(fmaxf(xs, 0.0f), (float)(w - 1));  // replicate border
        ys = fminf(fmaxf(ys, 0.0f), (float)(h - 1));
        int x0 = (int)xs;  // xs >= 0: truncation is floor
        int y0 = (int)ys;
        int x1 = min(x0 + 1, w - 1);
        int y1 = min(y0 + 1, h - 1);
        float ax = xs - (float)x0;
        float ay = ys - (float)y0;

        long long frame_bytes = (long long)w * h * (i420 ? 3 : 6) / 2;
        const unsigned char* frame = src + clip_offset[s] + f * frame_bytes;
        float v00, v01, v10, v11;
        if (i420) {
            v00 = fv_i420_texel(frame, w, h, x0, y0, c, out_c);
            v01 = fv_i420_texel(frame, w, h, x1, y0, c, out_c);
            v10 = fv_i420_texel(frame, w, h, x0, y1, c, out_c);
            v11 = fv_i420_texel(frame, w, h, x1, y1, c, out_c);
        } else {
            v00 = fv_rgb_texel(frame, w, x0, y0, c, out_c);
            v01 = fv_rgb_texel(frame, w, x1, y0, c, out_c);
            v10 = fv_rgb_texel(frame, w, x0, y1, c, out_c);
            v11 = fv_rgb_texel(frame, w, x1, y1, c, out_c);
        }
        float top = v00 + ax * (v01 - v00);
        float bottom = v10 + ax * (v11 - v10);
        out[i] = (top + ay * (bottom - top)) * rescale;
    }
}

// clips of RGB frames (F, h, w, 3)
extern "C" __global__ void prepare_rgb(const unsigned char* __restrict__ src,
                                       const long long* __restrict__ clip_offset,
                                       const int* __restrict__ clip_size,
                                       const float* __restrict__ mats, int n, int frames,
                                       int out_w, int out_h, int out_c, int zero_outside,
                                       float rescale, float* __restrict__ out) {
    fv_prepare(false, src, clip_offset, clip_size, mats, n, frames, out_w, out_h, out_c,
               zero_outside, rescale, out);
}

// clips of I420 frames (F, h*3/2, w): the decoder's yuv420p planes, half the bytes of RGB
extern "C" __global__ void prepare_i420(const unsigned char* __restrict__ src,
                                        const long long* __restrict__ clip_offset,
                                        const int* __restrict__ clip_size,
                                        const float* __restrict__ mats, int n, int frames,
                                        int out_w, int out_h, int out_c, int zero_outside,
                                        float rescale, float* __restrict__ out) {
    fv_prepare(true, src, clip_offset, clip_size, mats, n, frames, out_w, out_h, out_c,
               zero_outside, rescale, out);
}
