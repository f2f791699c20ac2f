// Grid launcher for the host emulation: the kernels of this folder compiled with g++,
// callable through ctypes the way cuLaunchKernel calls them on a GPU.
//
//   g++ -std=c++17 -O2 -shared -fPIC -ffp-contract=off host_launcher.cpp -o kernels.so
//
// fv_launch(name, grid[3], block[3], args) runs every thread of the grid in turn;
// args[i] points at the value of the kernel's i-th parameter (cuLaunchKernel's
// kernelParams convention). Returns 0, or -1 for an unknown kernel name.
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#include "host_emulation.h"

#include "motion.cu"
#include "prepare.cu"

namespace {

// Call kernel k once with its parameters read from args (types from k's signature).
template <typename... A, std::size_t... I>
void call(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <typename... A>
void run_grid(void (*k)(A...), dim3 grid, dim3 block, void** args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx)
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx) {
                            blockIdx = {bx, by, bz};
                            threadIdx = {tx, ty, tz};
                            call(k, args, std::index_sequence_for<A...>{});
                        }
}

struct Kernel {
    const char* name;
    void (*launch)(dim3, dim3, void**);
};

#define FV_KERNEL(k) {#k, [](dim3 g, dim3 b, void** a) { run_grid(k, g, b, a); }}

// Every extern "C" __global__ of the .cu files (tests/test_kernels_emulated.py checks).
const Kernel kKernels[] = {
    FV_KERNEL(prepare_rgb), FV_KERNEL(prepare_i420),   FV_KERNEL(rgb_to_gray),
    FV_KERNEL(abs_diff),    FV_KERNEL(gray_to_u8),     FV_KERNEL(blur_rows),
    FV_KERNEL(blur_cols),   FV_KERNEL(blend_mask),     FV_KERNEL(flow_magnitude),
    FV_KERNEL(flow_to_rgb),
};

}  // namespace

extern "C" int fv_launch(const char* name, const unsigned* grid, const unsigned* block,
                         void** args) {
    for (const Kernel& k : kKernels) {
        if (std::strcmp(k.name, name) == 0) {
            k.launch(dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), args);
            return 0;
        }
    }
    return -1;
}

// Name of kernel i, or nullptr past the end.
extern "C" const char* fv_kernel_name(int i) {
    return i >= 0 && i < (int)(sizeof(kKernels) / sizeof(kKernels[0])) ? kKernels[i].name
                                                                         : nullptr;
}
