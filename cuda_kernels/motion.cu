// Motion between consecutive frames (fastvid.ops.motion on the GPU), in the numbers of
// the CPU backend (fastvid/ops/cpu.py, fastvid/ops/flow.py). Building blocks, each one
// thread per output element, bounds-checked by a grid-stride loop:
//
//   rgb_to_gray     (P, C) -> (P): 0.299 R + 0.587 G + 0.114 B (copy when C = 1)
//   abs_diff        |gray(b) - gray(a)| of consecutive frames, in every output channel
//   gray_to_u8      round(255 * g / unit) clamped: the flow algorithms' input
//   blur_rows/cols  separable Gaussian (weights given), border reflect-101 (cv2 default)
//   blend_mask      (a + b) * scale * mask: the diff mask and flow mask
//   flow_magnitude  hypot(dx, dy)
//   flow_to_rgb     HSV rendering: angle as hue, normalised magnitude as value
//
// Sums whose rounding the CPU backend fixes are spelled with __fmul_rn/__fadd_rn/__fmaf_rn
// (never contracted or split by the compiler) so that the GPU, the host emulation and
// the CPU backend give the same bits.
// Plain CUDA C, no headers (NVRTC has none), no shared memory: see host_emulation.h.

#define FV_GRID_STRIDE(i, total)                                                  \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (long long)blockDim.x * gridDim.x)

// float32 gray bit for bit as the CPU backend's cv2.cvtColor(COLOR_RGB2GRAY) computes it
// on float input with OpenCV's AVX2/NEON code: fma(B, 0.114, fma(R, 0.299, G * 0.587)).
// (Bit-exact gray matters: flow runs on round(255 * gray) and uint8 ties are common.)
__device__ __forceinline__ float fv_gray(float r, float g, float b) {
    return __fmaf_rn(b, 0.114f, __fmaf_rn(r, 0.299f, __fmul_rn(g, 0.587f)));
}

// in: (pixels, c) with c = 1 or 3; out: (pixels)
extern "C" __global__ void rgb_to_gray(const float* __restrict__ in, long long pixels, int c,
                                       float* __restrict__ out) {
    FV_GRID_STRIDE(i, pixels) {
        const float* p = in + i * c;
        out[i] = c == 1 ? p[0] : fv_gray(p[0], p[1], p[2]);
    }
}

// gray: (n, frames + 1, hw); out: (n, frames, hw, out_c), |b - a| in every channel
extern "C" __global__ void abs_diff(const float* __restrict__ gray, int n, int frames,
                                    long long hw, int out_c, float* __restrict__ out) {
    long long total = (long long)n * frames * hw * out_c;
    FV_GRID_STRIDE(i, total) {
        long long p = i / out_c;  // (s, f, pixel)
        long long pixel = p % hw;
        long long sf = p / hw;
        long long s = sf / frames;
        long long a = (sf + s) * hw + pixel;  // frame f of sequence s in the (F + 1) layout
        out[i] = fabsf(gray[a + hw] - gray[a]);
    }
}

// in: float gray in units of `unit` (1 or 255); out: uint8 rint(clamp(255 * in / unit))
extern "C" __global__ void gray_to_u8(const float* __restrict__ in, long long count, float unit,
                                      unsigned char* __restrict__ out) {
    FV_GRID_STRIDE(i, count) {
        float v = __fmul_rn(__fdiv_rn(in[i], unit), 255.0f);
        out[i] = (unsigned char)rintf(fminf(fmaxf(v, 0.0f), 255.0f));
    }
}

// cv2's BORDER_REFLECT_101 index (gfedcb|abcdefgh|gfedcba), for any distance outside
__device__ __forceinline__ int fv_reflect101(int p, int len) {
    if (len == 1) return 0;
    while (p < 0 || p >= len) p = p < 0 ? -p : 2 * len - 2 - p;
    return p;
}

// One pass of a separable filter over (planes, h, w, c) images: along x when
// along_rows, else along y. weights: 2 * radius + 1 taps.
__device__ __forceinline__ void fv_blur_pass(bool along_rows, const float* __restrict__ in,
                                             int planes, int h, int w, int c,
                                             const float* __restrict__ weights, int radius,
                                             float* __restrict__ out) {
    long long total = (long long)planes * h * w * c;
    FV_GRID_STRIDE(i, total) {
        long long r = i;
        int k = (int)(r % c);
        r /= c;
        int x = (int)(r % w);
        r /= w;
        int y = (int)(r % h);
        long long plane = r / h;
        const float* base = in + plane * h * w * c + k;
        float acc = 0.0f;
        for (int t = -radius; t <= radius; ++t) {
            int xx = along_rows ? fv_reflect101(x + t, w) : x;
            int yy = along_rows ? y : fv_reflect101(y + t, h);
            acc += weights[t + radius] * base[((long long)yy * w + xx) * c];
        }
        out[i] = acc;
    }
}

extern "C" __global__ void blur_rows(const float* __restrict__ in, int planes, int h, int w,
                                     int c, const float* __restrict__ weights, int radius,
                                     float* __restrict__ out) {
    fv_blur_pass(true, in, planes, h, w, c, weights, radius, out);
}

extern "C" __global__ void blur_cols(const float* __restrict__ in, int planes, int h, int w,
                                     int c, const float* __restrict__ weights, int radius,
                                     float* __restrict__ out) {
    fv_blur_pass(false, in, planes, h, w, c, weights, radius, out);
}

// frames: (n, frames_out + 1, hw, c); mask: (n, frames_out, hw, mask_c), mask_c 1 or c;
// out: (n, frames_out, hw, c) = ((a + b) * scale) * mask
extern "C" __global__ void blend_mask(const float* __restrict__ frames,
                                      const float* __restrict__ mask, int n, int frames_out,
                                      long long hw, int c, int mask_c, float scale,
                                      float* __restrict__ out) {
    long long total = (long long)n * frames_out * hw * c;
    long long frame_size = hw * c;
    FV_GRID_STRIDE(i, total) {
        long long sf = i / frame_size;  // s * frames_out + f
        long long within = i % frame_size;
        long long s = sf / frames_out;
        long long a = (sf + s) * frame_size + within;
        float m = mask_c == c ? mask[i] : mask[i / c];
        out[i] = __fmul_rn(__fmul_rn(__fadd_rn(frames[a], frames[a + frame_size]), scale), m);
    }
}

// flow: (count, 2) -> mag: (count)
extern "C" __global__ void flow_magnitude(const float* __restrict__ flow, long long count,
                                          float* __restrict__ mag) {
    FV_GRID_STRIDE(i, count) { mag[i] = hypotf(flow[2 * i], flow[2 * i + 1]); }
}

// HSV -> RGB of fastvid/ops/flow.py render_flow, as OpenCV's float HSV2RGB with S = 1:
// hue = atan2(dy, dx) in degrees in [0, 360), value = (mag - lo) * inv (per frame).
// flow: (nframes, hw, 2); mag: (nframes, hw); lo, inv: (nframes);
// out: (nframes, hw, out_c) times `unit`; out_c = 1 gives the gray-weighted rendering.
extern "C" __global__ void flow_to_rgb(const float* __restrict__ flow,
                                       const float* __restrict__ mag,
                                       const float* __restrict__ lo,
                                       const float* __restrict__ inv, int nframes, long long hw,
                                       int out_c, float unit, float* __restrict__ out) {
    long long total = (long long)nframes * hw * out_c;
    FV_GRID_STRIDE(i, total) {
        long long p = i / out_c;
        int k = (int)(i % out_c);
        long long frame = p / hw;
        float ang = __fmul_rn(atan2f(flow[2 * p + 1], flow[2 * p]), 57.29577951308232f);
        if (ang < 0.0f) ang += 360.0f;
        if (ang >= 360.0f) ang = 0.0f;  // -0.0 + 360 rounds to 360
        float v = __fmul_rn(mag[p] - lo[frame], inv[frame]);
        float h = __fmul_rn(ang, 6.0f / 360.0f);
        int sector = (int)floorf(h);
        float f = h - (float)sector;
        if (sector < 0 || sector >= 6) {
            sector = 0;
            f = 0.0f;
        }
        float rise = v * (1.0f - (1.0f - f));  // OpenCV's spelling of v * f
        float fall = v * (1.0f - f);
        float r, g, b;
        switch (sector) {
            case 0: r = v; g = rise; b = 0.0f; break;
            case 1: r = fall; g = v; b = 0.0f; break;
            case 2: r = 0.0f; g = v; b = rise; break;
            case 3: r = 0.0f; g = fall; b = v; break;
            case 4: r = rise; g = 0.0f; b = v; break;
            default: r = v; g = 0.0f; b = fall; break;
        }
        float value = out_c == 1 ? fv_gray(r, g, b) : (k == 0 ? r : (k == 1 ? g : b));
        out[i] = __fmul_rn(value, unit);
    }
}
