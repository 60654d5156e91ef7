/* test_cuda_emu_self.cpp: the emulator's self-test (CTest label cuda-emu),
 * kernel language and runtime half: every feature against a plain host
 * reference, the launch-configuration errors, the aborts on divergent
 * barriers and warp ops (in forked children), device memory accounting,
 * streams and events; and the threads/s figure, printed, never asserted.
 * self_test_libs.cpp holds the cuBLAS and cuDNN tests, self_test_wmma.cpp
 * the WMMA ones, self_test_cublaslt.cpp the cuBLASLt ones. */
#include "self_test.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cudnn.h>

#include "self_test_kernels.h"

static bool is_nan_fill(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits == 0xFFFFFFFFu;
}

/* Points the emulator at a new environment value (cudaDeviceReset re-reads it). */
static void set_env_and_reset(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
    assert_int_equal(cudaDeviceReset(), cudaSuccess);
}

/* ---- kernels ------------------------------------------------------------------------- */

static void test_grid_stride_3d(void **state)
{
    (void)state;
    const dim3 grid(3, 2, 2), block(8, 4, 2);
    const int blocks = 12, threads = blocks * 64;
    const int64_t n = 2000;
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)i * 0.25f - 7.0f;
    float *dx = to_device(x), *dy = device_buffer<float>(n);
    int *hits = to_device(std::vector<int>(threads, 0)), *order = device_buffer<int>(blocks);
    int *count = to_device(std::vector<int>(1, 0));
    assert_int_equal(launch_grid_stride(grid, block, dx, dy, hits, order, count, n), cudaSuccess);
    const std::vector<float> y = to_host(dy, n);
    for (int64_t i = 0; i < n; i++)
        assert_true(y[i] == 2.0f * x[i] + 1.0f);
    for (int h : to_host(hits, threads))
        assert_int_equal(h, 1);
    const std::vector<int> started = to_host(order, blocks);
    for (int b = 0; b < blocks; b++)
        assert_int_equal(started[b], b); /* blockIdx order, x fastest */
    cudaFree(dx), cudaFree(dy), cudaFree(hits), cudaFree(order), cudaFree(count);
}

static void test_block_reduction(void **state)
{
    (void)state;
    const int n = 1000, blocks = 8;
    std::vector<float> x(n);
    for (int i = 0; i < n; i++)
        x[i] = (float)(i % 17) * 0.25f - 1.0f;
    float *dx = to_device(x), *dout = device_buffer<float>(blocks);
    assert_int_equal(launch_block_sum_128(dx, dout, n), cudaSuccess);
    const std::vector<float> out = to_host(dout, blocks);
    for (int b = 0; b < blocks; b++) {
        double expect = 0;
        for (int i = b * 128; i < n && i < (b + 1) * 128; i++)
            expect += x[i];
        assert_true(out[b] == (float)expect);
    }
    cudaFree(dx), cudaFree(dout);
}

static void test_syncthreads_votes(void **state)
{
    (void)state;
    const unsigned threads = 96;
    std::vector<float> x(threads);
    for (unsigned t = 0; t < threads; t++)
        x[t] = t % 5 == 0 ? 1.0f : -1.0f;
    float *dx = to_device(x);
    int *dout = device_buffer<int>(3);
    assert_int_equal(launch_sync_votes(dx, dout, threads), cudaSuccess);
    std::vector<int> out = to_host(dout, 3);
    assert_int_equal(out[0], 20);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], 1);
    cudaFree(dx);
    dx = to_device(std::vector<float>(threads, 2.0f));
    assert_int_equal(launch_sync_votes(dx, dout, threads), cudaSuccess);
    out = to_host(dout, 3);
    assert_int_equal(out[0], (int)threads);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 1);
    cudaFree(dx), cudaFree(dout);
}

/* The thread a shuffle reads, per the CUDA programming guide: idx reads
 * lane srcLane mod width of the caller's segment; up/down read delta lanes
 * away and keep their own value outside the segment; xor may read earlier
 * segments but keeps its own value for later ones. */
static unsigned reference_source(int kind, unsigned t, int arg, int width)
{
    const unsigned lane = t % 32, warp_base = t - lane;
    const unsigned seg = lane / (unsigned)width * (unsigned)width, seg_end = seg + (unsigned)width;
    unsigned src = lane;
    switch (kind) {
    case SHUFFLE_IDX: src = seg + (7 * t + (unsigned)arg) % (unsigned)width; break;
    case SHUFFLE_UP: src = lane >= seg + (unsigned)arg ? lane - (unsigned)arg : lane; break;
    case SHUFFLE_DOWN: src = lane + (unsigned)arg < seg_end ? lane + (unsigned)arg : lane; break;
    default: src = (lane ^ (unsigned)arg) < seg_end ? lane ^ (unsigned)arg : lane; break;
    }
    return warp_base + src;
}

template <typename T>
static void check_shuffles(cudaError_t (*launch)(const T *, T *, unsigned, int, int, int), T (*value)(unsigned))
{
    const unsigned threads = 64;
    std::vector<T> in(threads);
    for (unsigned t = 0; t < threads; t++)
        in[t] = value(t);
    T *din = to_device(in), *dout = device_buffer<T>(threads);
    const int args[4][3] = {{0, 3, 40}, {1, 3, 5}, {1, 2, 7}, {1, 6, 17}};
    for (int kind = 0; kind < 4; kind++)
        for (int a = 0; a < 3; a++)
            for (int width = 32; width >= 1; width /= 2) {
                const int arg = args[kind][a];
                if (kind == SHUFFLE_UP || kind == SHUFFLE_DOWN)
                    if (arg >= 32)
                        continue;
                assert_int_equal(launch(din, dout, threads, kind, arg, width), cudaSuccess);
                const std::vector<T> out = to_host(dout, threads);
                for (unsigned t = 0; t < threads; t++)
                    assert_memory_equal(&out[t], &in[reference_source(kind, t, arg, width)], sizeof(T));
            }
    cudaFree(din), cudaFree(dout);
}

static int int_value(unsigned t) { return (int)t * 3 - 50; }
static unsigned unsigned_value(unsigned t) { return 0xF0000000u + t; }
static float float_value(unsigned t) { return (float)t * 0.5f - 3.0f; }
static double double_value(unsigned t) { return (double)t * 1e-3 + 1e10; }
static long long long_long_value(unsigned t) { return (1LL << 40) + (long long)t; }

static void test_shuffles(void **state)
{
    (void)state;
    check_shuffles<int>(launch_shuffle_int, int_value);
    check_shuffles<unsigned>(launch_shuffle_unsigned, unsigned_value);
    check_shuffles<float>(launch_shuffle_float, float_value);
    check_shuffles<double>(launch_shuffle_double, double_value);
    check_shuffles<long long>(launch_shuffle_long_long, long_long_value);
}

static void test_warp_reductions(void **state)
{
    (void)state;
    const unsigned threads = 64;
    std::vector<float> in(threads);
    for (unsigned t = 0; t < threads; t++)
        in[t] = (float)(t % 7) - 2.5f;
    float *din = to_device(in), *dxor = device_buffer<float>(threads), *ddown = device_buffer<float>(threads);
    for (int width = 32; width >= 2; width /= 2) {
        assert_int_equal(launch_warp_sums(din, dxor, ddown, threads, width), cudaSuccess);
        const std::vector<float> xs = to_host(dxor, threads), ds = to_host(ddown, threads);
        for (unsigned t = 0; t < threads; t++) {
            const unsigned seg = t / (unsigned)width * (unsigned)width;
            float expect = 0;
            for (unsigned s = seg; s < seg + (unsigned)width; s++)
                expect += in[s];
            assert_true(xs[t] == expect);
            if (t == seg)
                assert_true(ds[t] == expect);
        }
    }
    cudaFree(din), cudaFree(dxor), cudaFree(ddown);
}

static void test_votes(void **state)
{
    (void)state;
    const unsigned threads = 80; /* warps of 32, 32 and 16 lanes */
    std::vector<int> in(threads, 1);
    for (unsigned t = 0; t < 32; t += 3)
        in[t] = 0;
    int *din = to_device(in);
    unsigned *dout = device_buffer<unsigned>(9);
    assert_int_equal(launch_votes(din, dout, threads), cudaSuccess);
    const std::vector<unsigned> out = to_host(dout, 9);
    unsigned ballot0 = 0;
    for (unsigned t = 0; t < 32; t++)
        ballot0 |= (unsigned)(in[t] != 0) << t;
    assert_int_equal(out[0], ballot0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 0);
    assert_int_equal(out[3], 0xffffffffu);
    assert_int_equal(out[5], 1);
    assert_int_equal(out[6], 0x0000ffffu); /* the partial warp's lanes only */
    assert_int_equal(out[7], 1);
    assert_int_equal(out[8], 1);
    cudaFree(din), cudaFree(dout);
}

/* Lanes a partial last warp lacks count as the warp; reading one gives NaN. */
static void test_partial_warp(void **state)
{
    (void)state;
    const unsigned threads = 48;
    std::vector<float> in(threads);
    for (unsigned t = 0; t < threads; t++)
        in[t] = (float)t;
    float *din = to_device(in), *dout = device_buffer<float>(threads);
    assert_int_equal(launch_shuffle_float(din, dout, threads, SHUFFLE_DOWN, 16, 32), cudaSuccess);
    std::vector<float> out = to_host(dout, threads);
    for (unsigned t = 0; t < 32; t++)
        assert_true(out[t] == (t < 16 ? in[t + 16] : in[t]));
    for (unsigned t = 32; t < 48; t++)
        assert_true(is_nan_fill(out[t]));
    assert_int_equal(launch_shuffle_float(din, dout, threads, SHUFFLE_XOR, 1, 16), cudaSuccess);
    out = to_host(dout, threads);
    for (unsigned t = 0; t < threads; t++)
        assert_true(out[t] == in[t ^ 1]);
    cudaFree(din), cudaFree(dout);
}

static void test_dynamic_shared_memory(void **state)
{
    (void)state;
    assert_int_equal(cudaDeviceReset(), cudaSuccess); /* no opt-in left from earlier runs */
    const unsigned blocks = 3, threads = 64;
    const size_t small = 1024, large = 64 * 1024;
    const size_t n_large = blocks * large / 4;
    float *first = device_buffer<float>(n_large), *out = device_buffer<float>(n_large);
    int *misaligned = device_buffer<int>(blocks);

    assert_int_equal(launch_dynamic_smem(blocks, threads, small, first, out, misaligned), cudaSuccess);
    const size_t n = small / 4;
    std::vector<float> seen = to_host(first, blocks * n), rev = to_host(out, blocks * n);
    for (size_t i = 0; i < blocks * n; i++) {
        assert_true(is_nan_fill(seen[i])); /* NaN at every block start, block 0's writes included */
        assert_true(rev[i] == (float)(i / n * n + (n - 1 - i % n)));
    }
    for (int m : to_host(misaligned, blocks))
        assert_int_equal(m, 0);

    assert_int_equal(cudaMemset(first, 0, n_large * 4), cudaSuccess);
    assert_int_equal(launch_dynamic_smem(blocks, threads, large, first, out, misaligned), cudaErrorInvalidValue);
    assert_int_equal(cudaGetLastError(), cudaSuccess); /* sd_launched() read it */
    assert_true(to_host(first, 1)[0] == 0.0f);       /* nothing ran */
    assert_int_equal(launch_dynamic_smem(blocks, threads, 48 * 1024, first, out, misaligned), cudaSuccess);
    assert_int_equal(allow_dynamic_smem(227 * 1024 + 1), cudaErrorInvalidValue);
    assert_int_equal(cudaGetLastError(), cudaErrorInvalidValue);
    assert_int_equal(allow_dynamic_smem((int)large), cudaSuccess);
    assert_int_equal(launch_dynamic_smem(blocks, threads, large, first, out, misaligned), cudaSuccess);
    seen = to_host(first, n_large);
    for (size_t i = 0; i < n_large; i++)
        assert_true(is_nan_fill(seen[i]));
    assert_int_equal(launch_dynamic_smem(blocks, threads, large + 4, first, out, misaligned), cudaErrorInvalidValue);
    cudaFree(first), cudaFree(out), cudaFree(misaligned);
}

static void noop_kernel(int *) {}

static void expect_rejected(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, cudaError_t expect, int *flag)
{
    assert_int_equal(launch_flag(grid, block, smem, stream, flag), expect);
    assert_int_equal(cudaGetLastError(), cudaSuccess); /* launch_flag read (and cleared) it */
    assert_int_equal(to_host(flag, 1)[0], 0);
}

static void test_launch_configuration_errors(void **state)
{
    (void)state;
    int *flag = to_device(std::vector<int>(1, 0));
    const cudaError_t bad = cudaErrorInvalidConfiguration;
    expect_rejected(1, 1025, 0, 0, bad, flag);
    expect_rejected(1, dim3(1, 1025), 0, 0, bad, flag);
    expect_rejected(1, dim3(1, 1, 65), 0, 0, bad, flag);
    expect_rejected(1, dim3(32, 32, 2), 0, 0, bad, flag);
    expect_rejected(1, 0, 0, 0, bad, flag);
    expect_rejected(0, 32, 0, 0, bad, flag);
    expect_rejected(dim3(1, 0), 32, 0, 0, bad, flag);
    expect_rejected(dim3(1, 1, 0), 32, 0, 0, bad, flag);
    expect_rejected(dim3(1, 65536), 32, 0, 0, bad, flag);
    expect_rejected(dim3(1, 1, 65536), 32, 0, 0, bad, flag);
    expect_rejected(dim3(0x80000000u), 32, 0, 0, bad, flag);
    expect_rejected(1, 32, 48 * 1024 + 1, 0, cudaErrorInvalidValue, flag);
    cudaStream_t dead;
    assert_int_equal(cudaStreamCreate(&dead), cudaSuccess);
    assert_int_equal(cudaStreamDestroy(dead), cudaSuccess);
    expect_rejected(1, 32, 0, dead, cudaErrorInvalidResourceHandle, flag);

    /* the error sticks until read: peek keeps it, get clears it */
    int *unused = device_buffer<int>(1);
    emu_launch(1, 2048, 0, nullptr, noop_kernel)(unused);
    assert_int_equal(cudaPeekAtLastError(), bad);
    assert_int_equal(cudaPeekAtLastError(), bad);
    assert_int_equal(cudaGetLastError(), bad);
    assert_int_equal(cudaGetLastError(), cudaSuccess);

    assert_int_equal(launch_flag(1, dim3(16, 4, 16), 48 * 1024, 0, flag), cudaSuccess);
    assert_int_equal(to_host(flag, 1)[0], 1);
    assert_int_equal(launch_flag(dim3(2, 65535), dim3(1, 1, 64), 0, cudaStreamPerThread, flag), cudaSuccess);
    cudaFree(flag), cudaFree(unused);
}

/* ---- aborts ----------------------------------------------------------------------------- */

/* Runs `fn` in a forked child and collects how it ended and its stderr. */
ChildEnd run_in_child(void (*fn)(void))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    ChildEnd end{0, ""};
    char buf[4096];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof buf)) > 0)
        end.err.append(buf, (size_t)got);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &end.status, 0), pid);
    return end;
}

std::string expect_child_abort(void (*fn)(void), const char *message)
{
    const ChildEnd end = run_in_child(fn);
    if (end.err.find(message) == std::string::npos)
        fail_msg("expected \"%s\" in the child's stderr, got: %s", message, end.err.c_str());
    assert_true(WIFSIGNALED(end.status) && WTERMSIG(end.status) == SIGABRT);
    return end.err;
}

void expect_kernel_abort(void (*fn)(void), const char *message, const char *kernel_file)
{
    const std::string err = expect_child_abort(fn, message);
    assert_true(err.find("cuda_emu: ") != std::string::npos);
    assert_true(err.find("in kernel launched at ") != std::string::npos);
    assert_true(err.find(std::string(kernel_file) + ":") != std::string::npos);
}

static void expect_abort(void (*fn)(void), const char *message)
{
    expect_kernel_abort(fn, message, "self_test_kernels.cu");
}

static void test_aborts_on_divergence(void **state)
{
    (void)state;
    expect_abort(launch_divergent_barrier, "__syncthreads that exited threads of the block can no longer reach");
    expect_abort(launch_shuffle_after_exit, "warp op after some lanes of the warp exited");
    expect_abort(launch_mixed_warp_ops, "lanes of a warp reached different warp ops");
    expect_abort(launch_shuffle_beside_barrier, "warp op while other lanes of the warp wait at __syncthreads");
    expect_abort(launch_partial_mask_shuffle, "mask leaves out lanes of the warp");
}

static void test_stack_overflow_is_caught(void **state)
{
    (void)state;
    expect_abort(launch_stack_overflow, "fiber stack overflow (262144 bytes per thread; raise SDXL_CUDA_EMU_STACK)");
}

/* ---- SDXL_CUDA_EMU_SHUFFLE ---------------------------------------------------------------- */

static int wrong_neighbours(float *dout, unsigned threads)
{
    assert_int_equal(launch_racy_neighbour(dout, threads), cudaSuccess);
    const std::vector<float> out = to_host(dout, threads);
    int wrong = 0;
    for (unsigned t = 1; t < threads; t++)
        wrong += out[t] != (float)(t - 1);
    return wrong;
}

static void test_shuffle_mode_exposes_races(void **state)
{
    (void)state;
    const unsigned threads = 128;
    float *dout = device_buffer<float>(threads);
    assert_int_equal(wrong_neighbours(dout, threads), 0); /* in order, the race stays hidden */
    cudaFree(dout);
    set_env_and_reset("SDXL_CUDA_EMU_SHUFFLE", "1");
    dout = device_buffer<float>(threads);
    assert_true(wrong_neighbours(dout, threads) > 0);
    cudaFree(dout);
    test_block_reduction(state); /* a correct kernel stays correct */
    test_warp_reductions(state);
    set_env_and_reset("SDXL_CUDA_EMU_SHUFFLE", nullptr);
}

/* ---- memory ----------------------------------------------------------------------------------- */

static void expect_mem_info(size_t free_expected, size_t total_expected)
{
    size_t free_bytes = 0, total = 0;
    assert_int_equal(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
    assert_int_equal(free_bytes, free_expected);
    assert_int_equal(total, total_expected);
}

static void test_memory_limit_and_peak(void **state)
{
    (void)state;
    const size_t K = 1024, limit = 1024 * K;
    set_env_and_reset("SDXL_CUDA_EMU_MEMORY", "1048576");
    expect_mem_info(limit, limit);
    void *a = nullptr, *b = nullptr, *c = (void *)1;
    assert_int_equal(cudaMalloc(&a, 512 * K), cudaSuccess);
    expect_mem_info(limit - 512 * K, limit);
    assert_int_equal(cudaMalloc(&c, 600 * K), cudaErrorMemoryAllocation);
    assert_null(c);
    assert_int_equal(cudaGetLastError(), cudaErrorMemoryAllocation);
    cuda_emu_reset_peak();
    assert_int_equal(cuda_emu_peak_bytes(), 512 * K);
    assert_int_equal(cudaMalloc(&b, 256 * K), cudaSuccess);
    assert_int_equal(cudaFree(b), cudaSuccess);
    assert_int_equal(cuda_emu_peak_bytes(), 768 * K);
    void *pinned = nullptr; /* host memory: outside the limit */
    assert_int_equal(cudaMallocHost(&pinned, 2 * limit), cudaSuccess);
    expect_mem_info(limit - 512 * K, limit);
    assert_int_equal(cudaFreeHost(pinned), cudaSuccess);
    assert_int_equal(cudaFree(a), cudaSuccess);
    expect_mem_info(limit, limit);
    assert_int_equal(cudaMalloc(&a, limit + 1), cudaErrorMemoryAllocation);
    assert_int_equal(cudaMalloc(&a, limit), cudaSuccess);
    assert_int_equal(cudaFree(a), cudaSuccess);
    set_env_and_reset("SDXL_CUDA_EMU_MEMORY", nullptr);
    expect_mem_info((size_t)8 << 30, (size_t)8 << 30);
}

static unsigned long long pool_attr(cudaMemPool_t pool, cudaMemPoolAttr attr)
{
    unsigned long long v = 0;
    assert_int_equal(cudaMemPoolGetAttribute(pool, attr, &v), cudaSuccess);
    return v;
}

static void test_memory_pool(void **state)
{
    (void)state;
    const size_t K = 1024, limit = 1024 * K;
    set_env_and_reset("SDXL_CUDA_EMU_MEMORY", "1048576");
    cudaMemPool_t pool;
    assert_int_equal(cudaDeviceGetDefaultMemPool(&pool, 0), cudaSuccess);
    void *p = nullptr, *q = nullptr;
    assert_int_equal(cudaMallocAsync(&p, 300 * K, 0), cudaSuccess);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrUsedMemCurrent), 300 * K);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrReservedMemCurrent), 300 * K);
    assert_int_equal(cudaFreeAsync(p, 0), cudaSuccess);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrUsedMemCurrent), 0);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrReservedMemCurrent), 300 * K); /* until a sync */
    expect_mem_info(limit - 300 * K, limit);
    assert_int_equal(cudaStreamSynchronize(0), cudaSuccess);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrReservedMemCurrent), 0);

    unsigned long long keep = ~0ull;
    assert_int_equal(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), cudaSuccess);
    assert_int_equal(cudaMallocAsync(&p, 200 * K, 0), cudaSuccess);
    assert_int_equal(cudaFreeAsync(p, 0), cudaSuccess);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrReservedMemCurrent), 200 * K);
    assert_int_equal(cudaMallocAsync(&p, 100 * K, 0), cudaSuccess); /* from the reserve */
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrReservedMemCurrent), 200 * K);
    assert_int_equal(cudaMalloc(&q, limit - 200 * K + 1), cudaErrorMemoryAllocation);
    assert_int_equal(cudaFree(p), cudaSuccess);
    assert_int_equal(cudaMemPoolTrimTo(pool, 0), cudaSuccess);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrReservedMemCurrent), 0);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrUsedMemHigh), 300 * K);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrReservedMemHigh), 300 * K);
    unsigned long long zero = 0;
    assert_int_equal(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), cudaSuccess);
    assert_int_equal(pool_attr(pool, cudaMemPoolAttrUsedMemHigh), 0);
    assert_int_equal(cuda_emu_peak_bytes(), 300 * K);
    set_env_and_reset("SDXL_CUDA_EMU_MEMORY", nullptr);
}

static void test_malloc_fill_and_frees(void **state)
{
    (void)state;
    float *d = device_buffer<float>(16);
    for (float v : to_host(d, 16))
        assert_true(is_nan_fill(v));
    assert_int_equal((uintptr_t)d % 256, 0);
    void *pinned = nullptr;
    assert_int_equal(cudaHostAlloc(&pinned, 64, cudaHostAllocDefault), cudaSuccess);
    assert_int_equal(static_cast<unsigned char *>(pinned)[63], 0xFF);
    int on_stack = 0;
    assert_int_equal(cudaFree(&on_stack), cudaErrorInvalidValue);
    assert_int_equal(cudaFree(pinned), cudaErrorInvalidValue);
    assert_int_equal(cudaFreeHost(d), cudaErrorInvalidValue);
    assert_int_equal(cudaFree(d), cudaSuccess);
    assert_int_equal(cudaFree(d), cudaErrorInvalidValue); /* double free */
    assert_int_equal(cudaFree(nullptr), cudaSuccess);
    assert_int_equal(cudaFreeHost(pinned), cudaSuccess);
    assert_int_equal(cudaHostAlloc(&pinned, 64, 0x100), cudaErrorInvalidValue);
    void *empty = (void *)1;
    assert_int_equal(cudaMalloc(&empty, 0), cudaSuccess);
    assert_null(empty);
    assert_int_equal(cudaMalloc(nullptr, 4), cudaErrorInvalidValue);
    cudaGetLastError();
}

static void test_memcpy_and_memset_checks(void **state)
{
    (void)state;
    float host[8] = {0}, host2[8] = {0};
    float *d = device_buffer<float>(8);
    assert_int_equal(cudaMemcpy(d, host, sizeof host, cudaMemcpyHostToDevice), cudaSuccess);
    assert_int_equal(cudaMemcpy(host2, host, sizeof host, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    assert_int_equal(cudaMemcpy(host, d, sizeof host + 4, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    assert_int_equal(cudaMemcpy(host, d + 1, sizeof host, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    assert_int_equal(cudaMemcpy(host, d, sizeof host, (cudaMemcpyKind)7), cudaErrorInvalidMemcpyDirection);
    assert_int_equal(cudaMemcpy(host2, host, sizeof host, cudaMemcpyDefault), cudaSuccess);
    assert_int_equal(cudaMemcpy(host, d, sizeof host, cudaMemcpyDefault), cudaSuccess);
    assert_int_equal(cudaMemcpyAsync(d, d + 4, 16, cudaMemcpyDeviceToDevice, 0), cudaSuccess);
    assert_int_equal(cudaMemset(d, 0, sizeof host), cudaSuccess);
    assert_int_equal(cudaMemset(d, 0, sizeof host + 1), cudaErrorInvalidValue);
    assert_int_equal(cudaMemset(host, 0, sizeof host), cudaErrorInvalidValue);
    assert_int_equal(cudaMemsetAsync(d, 0, 4, (cudaStream_t)0x1234), cudaErrorInvalidResourceHandle);
    cudaGetLastError();
    cudaFree(d);
}

static void test_no_device(void **state)
{
    (void)state;
    set_env_and_reset("SDXL_CUDA_EMU_DEVICES", "0");
    int count = -1;
    assert_int_equal(cudaGetDeviceCount(&count), cudaErrorNoDevice);
    assert_int_equal(count, 0);
    void *p = nullptr;
    assert_int_equal(cudaMalloc(&p, 16), cudaErrorNoDevice);
    assert_int_equal(cudaSetDevice(0), cudaErrorNoDevice);
    assert_int_equal(launch_flag(1, 1, 0, 0, nullptr), cudaErrorNoDevice);
    cublasHandle_t blas;
    assert_int_equal(cublasCreate(&blas), CUBLAS_STATUS_NOT_INITIALIZED);
    cudnnHandle_t dnn;
    assert_int_equal(cudnnCreate(&dnn), CUDNN_STATUS_NOT_INITIALIZED);
    cublasLtHandle_t lt;
    assert_int_equal(cublasLtCreate(&lt), CUBLAS_STATUS_NOT_INITIALIZED);
    set_env_and_reset("SDXL_CUDA_EMU_DEVICES", nullptr);
    assert_int_equal(cudaGetDeviceCount(&count), cudaSuccess);
    assert_int_equal(count, 1);
}

static void test_device_properties(void **state)
{
    (void)state;
    cudaDeviceProp p;
    assert_int_equal(cudaGetDeviceProperties(&p, 0), cudaSuccess);
    assert_string_equal(p.name, "CUDA emulator (host CPU)");
    assert_int_equal(p.major, 9);
    assert_int_equal(p.minor, 0);
    assert_int_equal(p.multiProcessorCount, 4);
    assert_int_equal(p.maxThreadsPerBlock, 1024);
    assert_int_equal(p.maxThreadsPerMultiProcessor, 2048);
    assert_int_equal(p.sharedMemPerBlock, 48 * 1024);
    assert_int_equal(p.sharedMemPerBlockOptin, 227 * 1024);
    assert_int_equal(p.warpSize, 32);
    assert_int_equal(p.totalGlobalMem, (size_t)8 << 30);
    int v = 0;
    assert_int_equal(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
    assert_int_equal(v, 4);
    assert_int_equal(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), cudaSuccess);
    assert_int_equal(v, 227 * 1024);
    assert_int_equal(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, 0), cudaSuccess);
    assert_int_equal(v, 9);
    assert_int_equal(cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, 1), cudaErrorInvalidDevice);
    assert_int_equal(cudaGetDeviceProperties(&p, 1), cudaErrorInvalidDevice);
    assert_int_equal(cudaSetDevice(0), cudaSuccess);
    assert_int_equal(cudaGetDevice(&v), cudaSuccess);
    assert_int_equal(v, 0);
    assert_int_equal(cudaDriverGetVersion(&v), cudaSuccess);
    assert_int_equal(v, 13000);
    assert_int_equal(cudaRuntimeGetVersion(&v), cudaSuccess);
    assert_int_equal(v, CUDART_VERSION);
    cudaGetLastError();
}

static void test_streams_and_events(void **state)
{
    (void)state;
    cudaStream_t s;
    cudaEvent_t start, end, untimed, never;
    assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    assert_int_equal(cudaEventCreate(&start), cudaSuccess);
    assert_int_equal(cudaEventCreate(&end), cudaSuccess);
    assert_int_equal(cudaEventCreate(&never), cudaSuccess);
    assert_int_equal(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming), cudaSuccess);
    int *flag = device_buffer<int>(1);
    assert_int_equal(cudaEventRecord(start, s), cudaSuccess);
    assert_int_equal(launch_flag(64, 256, 0, s, flag), cudaSuccess);
    assert_int_equal(cudaEventRecord(end, s), cudaSuccess);
    assert_int_equal(cudaEventRecord(untimed, s), cudaSuccess);
    assert_int_equal(cudaEventSynchronize(end), cudaSuccess);
    assert_int_equal(cudaStreamWaitEvent(s, end, 0), cudaSuccess);
    assert_int_equal(cudaStreamQuery(s), cudaSuccess);
    assert_int_equal(cudaEventQuery(end), cudaSuccess);
    float ms = -1;
    assert_int_equal(cudaEventElapsedTime(&ms, start, end), cudaSuccess);
    assert_true(ms >= 0.0f);
    assert_int_equal(cudaEventElapsedTime(&ms, start, untimed), cudaErrorInvalidResourceHandle);
    assert_int_equal(cudaEventElapsedTime(&ms, start, never), cudaErrorInvalidResourceHandle);
    assert_int_equal(cudaStreamSynchronize(s), cudaSuccess);
    assert_int_equal(cudaStreamDestroy(s), cudaSuccess);
    assert_int_equal(cudaStreamDestroy(s), cudaErrorInvalidResourceHandle);
    assert_int_equal(cudaStreamSynchronize(s), cudaErrorInvalidResourceHandle);
    assert_int_equal(cudaStreamCreateWithFlags(&s, 0x10), cudaErrorInvalidValue);
    for (cudaEvent_t e : {start, end, untimed, never})
        assert_int_equal(cudaEventDestroy(e), cudaSuccess);
    assert_int_equal(cudaEventDestroy(start), cudaErrorInvalidResourceHandle);
    cudaGetLastError();
    cudaFree(flag);
}

static void test_error_strings(void **state)
{
    (void)state;
    assert_string_equal(cudaGetErrorString(cudaErrorInvalidConfiguration), "invalid configuration argument");
    assert_string_equal(cudaGetErrorName(cudaErrorInvalidConfiguration), "cudaErrorInvalidConfiguration");
    assert_string_equal(cudaGetErrorString(cudaErrorMemoryAllocation), "out of memory");
    assert_string_equal(cudaGetErrorName(cudaSuccess), "cudaSuccess");
    assert_string_equal(cudaGetErrorString((cudaError_t)12345), "unrecognized error code");
}

/* ---- throughput (printed, not asserted) ----------------------------------------------------------- */

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_thread_throughput(void **state)
{
    (void)state;
    const int n = 1 << 22;
    std::vector<float> x(n);
    for (int i = 0; i < n; i++)
        x[i] = (float)(i % 1000);
    float *dx = to_device(x), *dy = device_buffer<float>(n);
    const double t0 = seconds_now();
    assert_int_equal(launch_add_one(dx, dy, n), cudaSuccess);
    const double t1 = seconds_now();
    const std::vector<float> y = to_host(dy, n);
    for (int i = 0; i < n; i++)
        assert_true(y[i] == x[i] + 1.0f);
    printf("cuda_emu: %d barrier-free threads in %.3f s = %.1f million threads/s\n", n, t1 - t0,
           n / (t1 - t0) / 1e6);
    cudaFree(dx), cudaFree(dy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_stride_3d),
        cmocka_unit_test(test_block_reduction),
        cmocka_unit_test(test_syncthreads_votes),
        cmocka_unit_test(test_shuffles),
        cmocka_unit_test(test_warp_reductions),
        cmocka_unit_test(test_votes),
        cmocka_unit_test(test_partial_warp),
        cmocka_unit_test(test_dynamic_shared_memory),
        cmocka_unit_test(test_launch_configuration_errors),
        cmocka_unit_test(test_aborts_on_divergence),
        cmocka_unit_test(test_stack_overflow_is_caught),
        cmocka_unit_test(test_shuffle_mode_exposes_races),
        cmocka_unit_test(test_memory_limit_and_peak),
        cmocka_unit_test(test_memory_pool),
        cmocka_unit_test(test_malloc_fill_and_frees),
        cmocka_unit_test(test_memcpy_and_memset_checks),
        cmocka_unit_test(test_no_device),
        cmocka_unit_test(test_device_properties),
        cmocka_unit_test(test_streams_and_events),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_thread_throughput),
    };
    const int failed = cmocka_run_group_tests_name("cuda_emu kernels and runtime", tests, nullptr, nullptr);
    return failed + run_library_tests() + run_wmma_tests() + run_cublaslt_tests();
}
