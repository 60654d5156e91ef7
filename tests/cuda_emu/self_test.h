/* self_test.h: what the emulator self-test's files share: cmocka, device
 * buffer and element-value helpers, the abort check, and the test groups'
 * entry points. */
#ifndef SDXL_CUDA_EMU_SELF_TEST_H
#define SDXL_CUDA_EMU_SELF_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

extern "C" { /* cmocka 1.1's header has no C++ guard */
#include <cmocka.h>
}

#include <string>
#include <vector>

#include "emu_internal.h"

/* A device copy of `host`. */
template <typename T> T *to_device(const std::vector<T> &host)
{
    void *p = nullptr;
    assert_int_equal(cudaMalloc(&p, host.size() * sizeof(T)), cudaSuccess);
    assert_int_equal(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    return static_cast<T *>(p);
}

/* `n` device elements as cudaMalloc leaves them (0xFF bytes). */
template <typename T> T *device_buffer(size_t n)
{
    void *p = nullptr;
    assert_int_equal(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
    return static_cast<T *>(p);
}

template <typename T> std::vector<T> to_host(const T *device, size_t n)
{
    std::vector<T> host(n);
    assert_int_equal(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
}

/* How a forked child that ran some function ended, and its stderr. */
struct ChildEnd {
    int status; /* as waitpid reports it */
    std::string err;
};
ChildEnd run_in_child(void (*fn)(void));

/* Expects fn, run in a child, to abort (SIGABRT) with `message` on stderr;
 * returns that stderr. */
std::string expect_child_abort(void (*fn)(void), const char *message);

/* Expects fn, run in a child, to abort with "cuda_emu: <message>" naming
 * the launch site of a kernel in `kernel_file`. */
void expect_kernel_abort(void (*fn)(void), const char *message, const char *kernel_file);

/* ---- element values (self_test_libs.cpp) ---- */

/* Deterministic values on a 1/8 grid in [-2, 2): exact in fp16, bf16, TF32,
 * so that sums of their products are exact in fp32 and results can be
 * compared bit for bit after rounding to the output type. */
std::vector<float> grid_values(size_t n, unsigned seed);
/* `values` stored as `e` in a new device buffer. */
void *device_elems(const std::vector<float> &values, emu::Elem e);
std::vector<float> host_elems(const void *device, size_t n, emu::Elem e);
/* What an fp32 result becomes when stored as `e`. */
float as_stored(float v, emu::Elem e);

/* Test groups; each returns its failures. */
int run_library_tests(void);  /* cuBLAS and cuDNN (self_test_libs.cpp) */
int run_wmma_tests(void);     /* self_test_wmma.cpp */
int run_cublaslt_tests(void); /* self_test_cublaslt.cpp */

#endif
