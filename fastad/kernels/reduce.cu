// fastad/kernels/reduce.cu: combine operators, warp/block reductions and atomic combines for reduction kernels.
//
// Start at `FaSum` ... `FaMin` (each: identity<T>() and apply(a, b)), then
// `fa_group_reduce`. `fastad/codegen/cuda.py` pastes this file after
// elementwise.cu into every kernel with reduced outputs.
//
// Accumulators use four real types (the renderer widens every real dtype to one):
// float, double, long long (signed ints) and unsigned long long (unsigned ints,
// bool), and complex.cu's fa_c64 / fa_c128 for complex sums and products.
// Integer sums and products wrap in the unsigned twin, so casting the
// accumulator back to int8 ... int32 gives numpy's wrapped result. Max and min
// propagate NaN (fa_maximum / fa_minimum).
//
// Reduction order is fixed for a given launch configuration: each thread
// combines its elements in loop order, a warp combines lanes by the shuffle
// tree below, a block combines warps through shared memory in warp order.
// Only the atomic combine (fa_atomic_combine, used for cross-block finishing
// when the deterministic flag is off) makes float results order-dependent.
//
// Compiles on its own (`nvcc --ptx -arch=sm_90 kernels/reduce.cu`): it pulls in
// elementwise.cu and, without FA_RENDERED, ends in a self-test kernel.

#ifndef FA_REDUCE_CU
#define FA_REDUCE_CU

#ifndef FA_ELEMENTWISE_CU
#include "elementwise.cu"
#endif

// ---------------------------------------------------------------------------
// Limits of the accumulator types
// ---------------------------------------------------------------------------

template <typename T> struct FaLimits;
template <> struct FaLimits<float> {
    static __device__ __forceinline__ float lowest() { return -fa_inff(); }
    static __device__ __forceinline__ float highest() { return fa_inff(); }
};
template <> struct FaLimits<double> {
    static __device__ __forceinline__ double lowest() { return -fa_inf(); }
    static __device__ __forceinline__ double highest() { return fa_inf(); }
};
template <> struct FaLimits<long long> {
    static __device__ __forceinline__ long long lowest() { return (long long)0x8000000000000000ULL; }
    static __device__ __forceinline__ long long highest() { return 0x7fffffffffffffffLL; }
};
template <> struct FaLimits<unsigned long long> {
    static __device__ __forceinline__ fa_u64 lowest() { return 0ULL; }
    static __device__ __forceinline__ fa_u64 highest() { return 0xffffffffffffffffULL; }
};

// wrapping integer add / mul; plain IEEE for floats
FA_DEV float fa_wadd(float a, float b) { return a + b; }
FA_DEV double fa_wadd(double a, double b) { return a + b; }
FA_DEV long long fa_wadd(long long a, long long b) { return (long long)((fa_u64)a + (fa_u64)b); }
FA_DEV fa_u64 fa_wadd(fa_u64 a, fa_u64 b) { return a + b; }
FA_DEV float fa_wmul(float a, float b) { return a * b; }
FA_DEV double fa_wmul(double a, double b) { return a * b; }
FA_DEV long long fa_wmul(long long a, long long b) { return (long long)((fa_u64)a * (fa_u64)b); }
FA_DEV fa_u64 fa_wmul(fa_u64 a, fa_u64 b) { return a * b; }

// ---------------------------------------------------------------------------
// Combine operators
// ---------------------------------------------------------------------------

struct FaSum {
    template <typename T> static __device__ __forceinline__ T identity() { return (T)0; }
    template <typename T> static __device__ __forceinline__ T apply(T a, T b) { return fa_wadd(a, b); }
};
struct FaProd {
    template <typename T> static __device__ __forceinline__ T identity() { return (T)1; }
    template <typename T> static __device__ __forceinline__ T apply(T a, T b) { return fa_wmul(a, b); }
};
struct FaMax {
    template <typename T> static __device__ __forceinline__ T identity() { return FaLimits<T>::lowest(); }
    template <typename T> static __device__ __forceinline__ T apply(T a, T b) { return fa_maximum(a, b); }
};
struct FaMin {
    template <typename T> static __device__ __forceinline__ T identity() { return FaLimits<T>::highest(); }
    template <typename T> static __device__ __forceinline__ T apply(T a, T b) { return fa_minimum(a, b); }
};

// ---------------------------------------------------------------------------
// Warp, block and group reductions (result valid in lane / thread 0)
// ---------------------------------------------------------------------------

// one lane's value from `o` lanes up; complex.cu overloads it for its struct (both parts)
template <typename T>
FA_DEV T fa_shfl_down(T v, int o) { return __shfl_down_sync(0xffffffffu, v, o); }

template <class Op, typename T>
FA_DEV T fa_warp_reduce(T v) {
#pragma unroll
    for (int o = FA_WARP / 2; o > 0; o >>= 1)
        v = Op::apply(v, fa_shfl_down(v, o));
    return v;
}

// Every thread of the block must call it (blockDim.x a multiple of FA_WARP, at most 32 warps).
template <class Op, typename T>
FA_DEV T fa_block_reduce(T v) {
    __shared__ T fa_warp_partials[32];
    const int lane = (int)threadIdx.x % FA_WARP;
    const int warp = (int)threadIdx.x / FA_WARP;
    const int nwarps = ((int)blockDim.x + FA_WARP - 1) / FA_WARP;
    v = fa_warp_reduce<Op>(v);
    if (lane == 0) fa_warp_partials[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nwarps ? fa_warp_partials[lane] : Op::template identity<T>();
        v = fa_warp_reduce<Op>(v);
    }
    __syncthreads();  // fa_warp_partials may be reused by the next call
    return v;
}

// group: 0 = one thread per row (nothing to combine), 1 = one warp per row, 2 = one block per row chunk.
template <class Op, typename T>
FA_DEV T fa_group_reduce(T v, int group) {
    if (group == 1) return fa_warp_reduce<Op>(v);
    if (group == 2) return fa_block_reduce<Op>(v);
    return v;
}

// ---------------------------------------------------------------------------
// Atomic combine into an output pre-filled with the identity (non-deterministic mode)
// ---------------------------------------------------------------------------

template <class Op>
FA_DEV void fa_atomic_cas(float* p, float v) {
    unsigned int* a = (unsigned int*)p;
    unsigned int old = *a, assumed;
    do {
        assumed = old;
        const unsigned int want = __float_as_uint(Op::apply(__uint_as_float(assumed), v));
        if (want == assumed) break;
        old = atomicCAS(a, assumed, want);
    } while (old != assumed);
}
template <class Op>
FA_DEV void fa_atomic_cas(double* p, double v) {
    fa_u64* a = (fa_u64*)p;
    fa_u64 old = *a, assumed;
    do {
        assumed = old;
        const fa_u64 want = (fa_u64)__double_as_longlong(Op::apply(__longlong_as_double((long long)assumed), v));
        if (want == assumed) break;
        old = atomicCAS(a, assumed, want);
    } while (old != assumed);
}
template <class Op>
FA_DEV void fa_atomic_cas(long long* p, long long v) {
    fa_u64* a = (fa_u64*)p;
    fa_u64 old = *a, assumed;
    do {
        assumed = old;
        const fa_u64 want = (fa_u64)Op::apply((long long)assumed, v);
        if (want == assumed) break;
        old = atomicCAS(a, assumed, want);
    } while (old != assumed);
}
template <class Op>
FA_DEV void fa_atomic_cas(fa_u64* p, fa_u64 v) {
    fa_u64 old = *p, assumed;
    do {
        assumed = old;
        const fa_u64 want = Op::apply(assumed, v);
        if (want == assumed) break;
        old = atomicCAS(p, assumed, want);
    } while (old != assumed);
}

template <class Op> struct FaAtomic {      // prod, and max/min of floats: compare-and-swap loops
    template <typename T> static __device__ __forceinline__ void run(T* p, T v) { fa_atomic_cas<Op>(p, v); }
};
template <> struct FaAtomic<FaSum> {
    static __device__ __forceinline__ void run(float* p, float v) { atomicAdd(p, v); }
    static __device__ __forceinline__ void run(double* p, double v) { atomicAdd(p, v); }
    static __device__ __forceinline__ void run(long long* p, long long v) { atomicAdd((fa_u64*)p, (fa_u64)v); }
    static __device__ __forceinline__ void run(fa_u64* p, fa_u64 v) { atomicAdd(p, v); }
};
template <> struct FaAtomic<FaMax> {
    static __device__ __forceinline__ void run(float* p, float v) { fa_atomic_cas<FaMax>(p, v); }
    static __device__ __forceinline__ void run(double* p, double v) { fa_atomic_cas<FaMax>(p, v); }
    static __device__ __forceinline__ void run(long long* p, long long v) { atomicMax(p, v); }
    static __device__ __forceinline__ void run(fa_u64* p, fa_u64 v) { atomicMax(p, v); }
};
template <> struct FaAtomic<FaMin> {
    static __device__ __forceinline__ void run(float* p, float v) { fa_atomic_cas<FaMin>(p, v); }
    static __device__ __forceinline__ void run(double* p, double v) { fa_atomic_cas<FaMin>(p, v); }
    static __device__ __forceinline__ void run(long long* p, long long v) { atomicMin(p, v); }
    static __device__ __forceinline__ void run(fa_u64* p, fa_u64 v) { atomicMin(p, v); }
};

template <class Op, typename T>
FA_DEV void fa_atomic_combine(T* p, T v) { FaAtomic<Op>::run(p, v); }

#endif  // FA_REDUCE_CU

// ---------------------------------------------------------------------------
// Self-test: every operator, accumulator type and path (only when compiled on its own)
// ---------------------------------------------------------------------------
#ifndef FA_RENDERED
#ifndef FA_REDUCE_SELFTEST
#define FA_REDUCE_SELFTEST
template <class Op, typename T>
FA_DEV void fa_selftest_reduce_one(const T* x, T* out, int group) {
    T v = Op::apply(Op::template identity<T>(), x[threadIdx.x]);
    v = fa_group_reduce<Op>(v, group);
    if (threadIdx.x == 0) {
        fa_atomic_combine<Op>(out, v);
        out[1] = v;
    }
}
#define FA_SELFTEST_R(T)                                     \
    fa_selftest_reduce_one<FaSum, T>((const T*)x, (T*)out, group);  \
    fa_selftest_reduce_one<FaProd, T>((const T*)x, (T*)out, group); \
    fa_selftest_reduce_one<FaMax, T>((const T*)x, (T*)out, group);  \
    fa_selftest_reduce_one<FaMin, T>((const T*)x, (T*)out, group);
extern "C" __global__ void fa_selftest_reduce(const void* x, void* out, int group) {
    FA_SELFTEST_R(float) FA_SELFTEST_R(double) FA_SELFTEST_R(long long) FA_SELFTEST_R(fa_u64)
}
#endif
#endif
