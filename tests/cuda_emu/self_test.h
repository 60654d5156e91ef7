/* self_test.h: what the emulator self-test's files share: cmocka, device
 * buffer helpers and the library test group's entry point. */
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

#include "cuda_emu.h"

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

/* Runs the cuBLAS and cuDNN tests (self_test_libs.cpp); returns the failures. */
int run_library_tests(void);

#endif
