/* emu_wmma.h: nvcuda::wmma, the warp matrix functions of CUDA's <mma.h>
 * (tensor cores), for kernels compiled by g++ under the emulator;
 * cuda_emu.h includes it. (Outside nvcc the real <mma.h> declares nothing,
 * so a kernel file may include it as well.)
 *
 * Implemented, with the names and signatures of CUDA 13's crt/mma.h:
 * fragment<Use, M, N, K, T, Layout> for matrix_a / matrix_b (row_major,
 * col_major) and accumulator; shapes m16n16k16, m32n8k16 and m8n32k16 with
 * __half or __nv_bfloat16 inputs, m16n16k8 with precision::tf32 inputs;
 * float accumulators, and __half accumulators for __half inputs;
 * fill_fragment, load_matrix_sync, store_matrix_sync (layout_t
 * mem_row_major / mem_col_major for accumulators), mma_sync, and
 * __float_to_tf32. Integer, sub-byte and double fragments are not.
 *
 * The element mapping of fragment::x[] is unspecified in CUDA. Here every
 * lane holds the whole tile, row-major: num_elements is rows * cols (256
 * for a 16x16 accumulator, where a GPU lane holds 8). Whole-fragment
 * operations and loops that do the same to every x[i] behave as on a GPU.
 * Code that depends on which element a lane holds where (per-element masks
 * or per-row scales through x[], buffers sized from num_elements) is not
 * portable and is NOT emulated faithfully; when it makes lanes' copies of a
 * fragment differ, the next mma_sync or store_matrix_sync aborts.
 *
 * load/store/mma_sync are warp-collective, as CUDA documents: they wait
 * until every lane of the warp has arrived with the same arguments (else
 * the kernel aborts; a partial warp aborts too). Then each lane loads the
 * whole tile itself, so a lane that writes the memory before another lane
 * has loaded it (a missing __syncwarp) makes the copies differ; a store
 * writes lane l's share of the elements (every 32nd, from l) when lane l
 * goes on, so reading what other lanes stored without a __syncwarp reads
 * stale memory. mma_sync computes d = a b + c once for the warp: exact
 * products accumulated in fp32 (fmaf in k order, starting from c), rounded
 * once to d's type. Pointers must be 256-bit aligned and ldm a multiple of
 * 16 bytes' worth of elements (8 for 16-bit types, 4 for float), as CUDA
 * requires: anything else aborts. tf32 fragments hold floats; mma_sync
 * uses their top 19 bits (truncation, as tensor cores read unconverted
 * input), __float_to_tf32 rounds to nearest with ties away (cvt.rna). */
#ifndef SDXL_CUDA_EMU_WMMA_H
#define SDXL_CUDA_EMU_WMMA_H

#include <stdint.h>

#include <type_traits>

namespace nvcuda {
namespace wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}

enum layout_t { mem_row_major, mem_col_major };

template <typename T> struct helper_traits {
    typedef T element_type;
    typedef T storage_element_type;
    typedef T fill_argument_type;
};

template <> struct helper_traits<precision::tf32> {
    typedef precision::tf32 element_type;
    typedef float storage_element_type;
    typedef float fill_argument_type;
};

} /* namespace wmma */
} /* namespace nvcuda */

namespace emu {
namespace wmma_detail {

enum class Type : uint8_t { F16, BF16, F32, TF32 };

template <typename T> struct type_of;
template <> struct type_of<__half> { static constexpr Type value = Type::F16; };
template <> struct type_of<__nv_bfloat16> { static constexpr Type value = Type::BF16; };
template <> struct type_of<float> { static constexpr Type value = Type::F32; };
template <> struct type_of<nvcuda::wmma::precision::tf32> { static constexpr Type value = Type::TF32; };

/* rows x cols of a fragment of `Use` in an M x N x K product. */
template <typename Use, int M, int N, int K> struct dims;
template <int M, int N, int K> struct dims<nvcuda::wmma::matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K> struct dims<nvcuda::wmma::matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K> struct dims<nvcuda::wmma::accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

template <typename A, typename B> constexpr bool same() { return std::is_same<A, B>::value; }

constexpr bool shape_16bit(int m, int n, int k)
{
    return (m == 16 && n == 16 && k == 16) || (m == 32 && n == 8 && k == 16) || (m == 8 && n == 32 && k == 16);
}

/* The fragments crt/mma.h defines that the emulator implements. */
template <typename Use, int M, int N, int K, typename T, typename Layout> constexpr bool valid_fragment()
{
    using namespace nvcuda::wmma;
    const bool input = same<Use, matrix_a>() || same<Use, matrix_b>();
    const bool sixteen = same<T, __half>() || same<T, __nv_bfloat16>();
    if (input)
        return (same<Layout, row_major>() || same<Layout, col_major>()) &&
               ((sixteen && shape_16bit(M, N, K)) || (same<T, precision::tf32>() && M == 16 && N == 16 && K == 8));
    return same<Use, accumulator>() && same<Layout, void>() &&
           ((same<T, float>() && (shape_16bit(M, N, K) || (M == 16 && N == 16 && K == 8))) ||
            (same<T, __half>() && shape_16bit(M, N, K)));
}

/* The mma_sync overloads crt/mma.h declares: __half inputs with __half or
 * float accumulators, __nv_bfloat16 and tf32 inputs with float ones. */
template <typename AB, typename C, typename D> constexpr bool valid_mma()
{
    if (same<AB, __half>())
        return (same<C, __half>() || same<C, float>()) && (same<D, __half>() || same<D, float>());
    return same<C, float>() && same<D, float>();
}

/* A fragment's elements as the collective operations see them: rows x cols
 * of `type`, row-major at x (each lane's own copy). */
struct Tile {
    void *x;
    int rows, cols;
    Type type;
};

template <typename Use, int M, int N, int K, typename T> Tile tile(const void *x)
{
    return Tile{const_cast<void *>(x), dims<Use, M, N, K>::rows, dims<Use, M, N, K>::cols, type_of<T>::value};
}

/* emu_wmma.cpp: the lane's side of each collective operation. */
void load(const Tile &frag, const void *p, unsigned ldm, bool col_major, const char *api);
void store(void *p, const Tile &frag, unsigned ldm, bool col_major);
void mma(const Tile &d, const Tile &a, const Tile &b, const Tile &c);

} /* namespace wmma_detail */
} /* namespace emu */

namespace nvcuda {
namespace wmma {

template <typename Use, int M, int N, int K, typename T, typename Layout = void> class fragment {
    static_assert(emu::wmma_detail::valid_fragment<Use, M, N, K, T, Layout>(),
                  "not a WMMA fragment the emulator implements (tests/cuda_emu/emu_wmma.h lists them)");

public:
    enum { num_elements = emu::wmma_detail::dims<Use, M, N, K>::rows * emu::wmma_detail::dims<Use, M, N, K>::cols };
    enum { num_storage_elements = num_elements };
    typedef typename helper_traits<T>::element_type element_type;
    typedef typename helper_traits<T>::storage_element_type storage_element_type;
    storage_element_type x[num_elements];
};

/* Rounds to TF32 (10 mantissa bits) to nearest, ties away from zero, as
 * cvt.rna.tf32.f32 does; infinities and NaN pass unchanged. */
inline float __float_to_tf32(float in)
{
    uint32_t u = emu::from_bits<uint32_t>(emu::to_bits(in));
    if ((u & 0x7f800000u) != 0x7f800000u)
        u = (u + 0x1000u) & 0xffffe000u;
    return emu::from_bits<float>(u);
}

/* Not warp-collective in CUDA either: each lane fills its own elements. */
template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, const typename helper_traits<T>::fill_argument_type &v)
{
    for (int i = 0; i < fragment<Use, M, N, K, T, Layout>::num_elements; i++)
        f.x[i] = v;
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &a,
                             const typename helper_traits<T>::storage_element_type *p, unsigned ldm)
{
    static_assert(!std::is_same<Use, accumulator>::value,
                  "an accumulator's load_matrix_sync takes a layout_t (mem_row_major or mem_col_major)");
    emu::wmma_detail::load(emu::wmma_detail::tile<Use, M, N, K, T>(a.x), p, ldm, std::is_same<Layout, col_major>::value,
                           "load_matrix_sync");
}

template <int M, int N, int K, typename T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T> &a, const T *p, unsigned ldm, layout_t layout)
{
    emu::wmma_detail::load(emu::wmma_detail::tile<accumulator, M, N, K, T>(a.x), p, ldm, layout == mem_col_major,
                           "load_matrix_sync");
}

template <int M, int N, int K, typename T>
inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T> &a, unsigned ldm, layout_t layout)
{
    emu::wmma_detail::store(p, emu::wmma_detail::tile<accumulator, M, N, K, T>(a.x), ldm, layout == mem_col_major);
}

/* d = a b + c; d may be c. */
template <int M, int N, int K, typename TD, typename TAB, typename LA, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TD> &d, const fragment<matrix_a, M, N, K, TAB, LA> &a,
                     const fragment<matrix_b, M, N, K, TAB, LB> &b, const fragment<accumulator, M, N, K, TC> &c)
{
    static_assert(emu::wmma_detail::valid_mma<TAB, TC, TD>(), "no mma_sync overload for these fragment types");
    using namespace emu::wmma_detail;
    mma(tile<accumulator, M, N, K, TD>(d.x), tile<matrix_a, M, N, K, TAB>(a.x), tile<matrix_b, M, N, K, TAB>(b.x),
        tile<accumulator, M, N, K, TC>(c.x));
}

} /* namespace wmma */
} /* namespace nvcuda */

#endif
