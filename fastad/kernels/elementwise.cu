// fastad/kernels/elementwise.cu: the prelude of every kernel that fastad's CUDA renderer emits.
//
// Start at "Types" and "Intrinsics". `fastad/codegen/cuda.py` pastes this file
// (then reduce.cu for reductions) above the generated kernel, so generated
// code can call `fa_exp(v)`, `fa_floordiv(a, b)`, `fa_cast<T>(v)` ... on
// variables of exact C types and let C++ overloading pick the dtype's version.
// Every intrinsic name of the op table (`fastad/ops.py`, `expr`) has an
// `fa_<name>` here with numpy semantics:
//   * floordiv / mod follow numpy (Python floor semantics, sign of the divisor;
//     integer division by zero gives 0, float division by zero gives inf/nan);
//   * round is half-to-even (rint); sign(nan) = nan, sign(-0.0) = +0.0;
//   * maximum / minimum propagate NaN (and return `b` on ties, like numpy);
//   * pow of integers is exact with wrap-around (negative exponents, an error
//     in numpy, give 0, or +-1 for bases +-1);
//   * casts: to bool is `!= 0`; float to an integer truncates to int64 and
//     wraps (numpy on x86 for values within int64's range); NaN, infinities
//     and values beyond give int64's minimum, wrapped; uint64 takes
//     [2^63, 2^64) exactly (fastad.numpy_refs.cast, the rule of every tier).
// float32 uses the f-suffixed CUDA math (expf, logf, ...), accurate to a few
// ulp; compiling with -DFA_FAST_MATH=1 swaps exp/log/sin/cos for the hardware
// approximations (__expf, ...). docs/CUDA.md has the accuracy table.
//
// The file compiles on its own (`nvcc --ptx -arch=sm_90 kernels/elementwise.cu`):
// without FA_RENDERED defined it ends in a small self-test kernel that
// instantiates every helper. It also compiles as host C++ under
// FA_HOST_EMULATION (the tests run rendered kernels on the CPU that way), so it
// includes no headers and uses only CUDA builtins that the emulation shims.

#ifndef FA_ELEMENTWISE_CU
#define FA_ELEMENTWISE_CU

// ---------------------------------------------------------------------------
// Types and index width
// ---------------------------------------------------------------------------

// Index arithmetic type. The runtime compiles the same source twice at most:
// 32-bit (default; all buffers and the iteration space below 2^31 elements)
// and, only when a launch needs it, with -DFA_INDEX_BITS=64.
#ifndef FA_INDEX_BITS
#define FA_INDEX_BITS 32
#endif
#if FA_INDEX_BITS == 64
typedef long long fa_idx;
#else
typedef int fa_idx;
#endif

// Threads per warp. 32 on the GPU; the host emulation runs one thread per block and sets 1.
#ifndef FA_WARP
#define FA_WARP 32
#endif

#ifndef FA_FAST_MATH
#define FA_FAST_MATH 0
#endif

#define FA_DEV __device__ __forceinline__

typedef unsigned long long fa_u64;

// Bit patterns for special values (no math.h in NVRTC).
FA_DEV float fa_inff() { return __int_as_float(0x7f800000); }
FA_DEV double fa_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
FA_DEV float fa_nanf() { return __int_as_float(0x7fc00000); }
FA_DEV double fa_nan() { return __longlong_as_double(0x7ff8000000000000LL); }

// ---------------------------------------------------------------------------
// Intrinsics: float32 and float64
// ---------------------------------------------------------------------------

#if FA_FAST_MATH
FA_DEV float fa_expf_(float x) { return __expf(x); }
FA_DEV float fa_logf_(float x) { return __logf(x); }
FA_DEV float fa_sinf_(float x) { return __sinf(x); }
FA_DEV float fa_cosf_(float x) { return __cosf(x); }
#else
FA_DEV float fa_expf_(float x) { return expf(x); }
FA_DEV float fa_logf_(float x) { return logf(x); }
FA_DEV float fa_sinf_(float x) { return sinf(x); }
FA_DEV float fa_cosf_(float x) { return cosf(x); }
#endif

FA_DEV float fa_exp(float x) { return fa_expf_(x); }
FA_DEV double fa_exp(double x) { return exp(x); }
FA_DEV float fa_log(float x) { return fa_logf_(x); }
FA_DEV double fa_log(double x) { return log(x); }
FA_DEV float fa_log1p(float x) { return log1pf(x); }
FA_DEV double fa_log1p(double x) { return log1p(x); }
FA_DEV float fa_expm1(float x) { return expm1f(x); }
FA_DEV double fa_expm1(double x) { return expm1(x); }
FA_DEV float fa_sqrt(float x) { return sqrtf(x); }
FA_DEV double fa_sqrt(double x) { return sqrt(x); }
FA_DEV float fa_sin(float x) { return fa_sinf_(x); }
FA_DEV double fa_sin(double x) { return sin(x); }
FA_DEV float fa_cos(float x) { return fa_cosf_(x); }
FA_DEV double fa_cos(double x) { return cos(x); }
FA_DEV float fa_tan(float x) { return tanf(x); }
FA_DEV double fa_tan(double x) { return tan(x); }
FA_DEV float fa_tanh(float x) { return tanhf(x); }
FA_DEV double fa_tanh(double x) { return tanh(x); }
FA_DEV float fa_erf(float x) { return erff(x); }
FA_DEV double fa_erf(double x) { return erf(x); }
FA_DEV float fa_floor(float x) { return floorf(x); }
FA_DEV double fa_floor(double x) { return floor(x); }
FA_DEV float fa_ceil(float x) { return ceilf(x); }
FA_DEV double fa_ceil(double x) { return ceil(x); }
FA_DEV float fa_round(float x) { return rintf(x); }      // half to even, like numpy
FA_DEV double fa_round(double x) { return rint(x); }
FA_DEV float fa_abs(float x) { return fabsf(x); }
FA_DEV double fa_abs(double x) { return fabs(x); }
FA_DEV bool fa_isnan(float x) { return x != x; }
FA_DEV bool fa_isnan(double x) { return x != x; }
FA_DEV bool fa_isinf(float x) { return fabsf(x) == fa_inff(); }
FA_DEV bool fa_isinf(double x) { return fabs(x) == fa_inf(); }
FA_DEV bool fa_isfinite(float x) { return fabsf(x) < fa_inff(); }    // false for nan
FA_DEV bool fa_isfinite(double x) { return fabs(x) < fa_inf(); }
// inverse and hyperbolic trig, log2/log10, trunc, signbit and the float binary functions of the
// array API: CUDA's libm, which follows C99 Annex F on NaN, +-inf and signed zeros as numpy does
#define FA_LIBM_FLOAT(T, S)                                                        \
    FA_DEV T fa_acos(T x) { return acos##S(x); }                                   \
    FA_DEV T fa_asin(T x) { return asin##S(x); }                                   \
    FA_DEV T fa_atan(T x) { return atan##S(x); }                                   \
    FA_DEV T fa_acosh(T x) { return acosh##S(x); }                                 \
    FA_DEV T fa_asinh(T x) { return asinh##S(x); }                                 \
    FA_DEV T fa_atanh(T x) { return atanh##S(x); }                                 \
    FA_DEV T fa_sinh(T x) { return sinh##S(x); }                                   \
    FA_DEV T fa_cosh(T x) { return cosh##S(x); }                                   \
    FA_DEV T fa_log2(T x) { return log2##S(x); }                                   \
    FA_DEV T fa_log10(T x) { return log10##S(x); }                                 \
    FA_DEV T fa_trunc(T x) { return trunc##S(x); }                                 \
    FA_DEV bool fa_signbit(T x) { return signbit(x); }                             \
    FA_DEV T fa_atan2(T a, T b) { return atan2##S(a, b); }                         \
    FA_DEV T fa_hypot(T a, T b) { return hypot##S(a, b); }                         \
    FA_DEV T fa_copysign(T a, T b) { return copysign##S(a, b); }                   \
    FA_DEV T fa_nextafter(T a, T b) { return nextafter##S(a, b); }                 \
    FA_DEV T fa_real(T x) { return x; }  /* complex parts of a real value */     \
    FA_DEV T fa_imag(T x) { return (T)0; }                                         \
    FA_DEV T fa_conj(T x) { return x; }                                            \
    FA_DEV T fa_logaddexp(T a, T b) {                                              \
        if (a != a || b != b) return a + b;                                        \
        if (a == b) return a + log1p##S((T)1);  /* also +-inf == +-inf */          \
        T m = a > b ? a : b, d = a > b ? b - a : a - b;                            \
        return m + log1p##S(exp##S(d));                                            \
    }
FA_LIBM_FLOAT(float, f)
FA_LIBM_FLOAT(double, )
FA_DEV float fa_pow(float a, float b) { return powf(a, b); }
FA_DEV double fa_pow(double a, double b) { return pow(a, b); }

// sigmoid without overflow for either sign: e = exp(-|x|) is in (0, 1].
FA_DEV float fa_sigmoid(float x) {
    const float e = fa_expf_(-fabsf(x));
    const float r = 1.0f / (1.0f + e);
    return x >= 0.0f ? r : e * r;
}
FA_DEV double fa_sigmoid(double x) {
    const double e = exp(-fabs(x));
    const double r = 1.0 / (1.0 + e);
    return x >= 0.0 ? r : e * r;
}

// sign: nan stays nan, +-0 gives +0 (numpy)
FA_DEV float fa_sign(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (x == 0.0f ? 0.0f : x)); }
FA_DEV double fa_sign(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : (x == 0.0 ? 0.0 : x)); }

// relu: numpy's maximum(x, 0), which keeps nan
FA_DEV float fa_relu(float x) { return x < 0.0f ? 0.0f : x; }
FA_DEV double fa_relu(double x) { return x < 0.0 ? 0.0 : x; }

// maximum / minimum: numpy returns a when it wins or is nan, else b (nan in b included)
FA_DEV float fa_maximum(float a, float b) { return (a > b || a != a) ? a : b; }
FA_DEV double fa_maximum(double a, double b) { return (a > b || a != a) ? a : b; }
FA_DEV float fa_minimum(float a, float b) { return (a < b || a != a) ? a : b; }
FA_DEV double fa_minimum(double a, double b) { return (a < b || a != a) ? a : b; }

// numpy's npy_divmod: fmod, moved to the divisor's sign, quotient snapped to an integer.
#define FA_FLOAT_DIVMOD(T, FMOD, FLOOR, COPYSIGN)                                 \
    FA_DEV T fa_floordiv(T a, T b) {                                               \
        if (b == (T)0 || fa_isinf(a) || fa_isinf(b)) return a / b;  /* array API */ \
        T mod = FMOD(a, b);                                                        \
        T div = (a - mod) / b;                                                     \
        if (mod != (T)0) {                                                         \
            if ((b < (T)0) != (mod < (T)0)) div -= (T)1;                           \
        }                                                                          \
        T fl;                                                                      \
        if (div != (T)0) {                                                         \
            fl = FLOOR(div);                                                       \
            if (div - fl > (T)0.5) fl += (T)1;                                     \
        } else {                                                                   \
            fl = COPYSIGN((T)0, a / b);                                            \
        }                                                                          \
        return fl;                                                                 \
    }                                                                              \
    FA_DEV T fa_mod(T a, T b) {                                                    \
        T mod = FMOD(a, b);                                                        \
        if (b == (T)0) return mod;                                                 \
        if (mod != (T)0) {                                                         \
            if ((b < (T)0) != (mod < (T)0)) mod += b;                              \
        } else {                                                                   \
            mod = COPYSIGN((T)0, b);                                               \
        }                                                                          \
        return mod;                                                                \
    }
FA_FLOAT_DIVMOD(float, fmodf, floorf, copysignf)
FA_FLOAT_DIVMOD(double, fmod, floor, copysign)

// ---------------------------------------------------------------------------
// Intrinsics: integers (signed T with its unsigned twin U) and bool
// ---------------------------------------------------------------------------

// Arithmetic that may overflow runs in the unsigned twin, so it wraps like numpy.
// Shifts as numpy: a count outside [0, bits) gives 0 (or -1 for a negative value shifted right).
#define FA_SHIFTS(T, U, NEG_FILL)                                                  \
    FA_DEV T fa_bitwise_invert(T a) { return (T)~a; }                              \
    FA_DEV T fa_lshift(T a, T b) {                                                 \
        return (fa_u64)(long long)b < 8 * sizeof(T) ? (T)((U)a << b) : (T)0;       \
    }                                                                              \
    FA_DEV T fa_rshift(T a, T b) {                                                 \
        return (fa_u64)(long long)b < 8 * sizeof(T) ? (T)(a >> b) : (NEG_FILL);    \
    }
FA_SHIFTS(signed char, unsigned char, a < 0 ? (signed char)-1 : (signed char)0)
FA_SHIFTS(short, unsigned short, a < 0 ? (short)-1 : (short)0)
FA_SHIFTS(int, unsigned int, a < 0 ? -1 : 0)
FA_SHIFTS(long long, unsigned long long, a < 0 ? -1LL : 0LL)
FA_SHIFTS(unsigned char, unsigned char, (unsigned char)0)
FA_SHIFTS(unsigned short, unsigned short, (unsigned short)0)
FA_SHIFTS(unsigned int, unsigned int, 0u)
FA_SHIFTS(unsigned long long, unsigned long long, 0ULL)

#define FA_SIGNED_INT(T, U)                                                        \
    FA_DEV T fa_abs(T a) { return a < (T)0 ? (T)((U)0 - (U)a) : a; }               \
    FA_DEV T fa_sign(T a) { return (T)((a > (T)0) - (a < (T)0)); }                 \
    FA_DEV T fa_relu(T a) { return a < (T)0 ? (T)0 : a; }                          \
    FA_DEV T fa_maximum(T a, T b) { return a > b ? a : b; }                        \
    FA_DEV T fa_minimum(T a, T b) { return a < b ? a : b; }                        \
    FA_DEV T fa_floordiv(T a, T b) {                                               \
        if (b == (T)0) return (T)0;                                                \
        if (b == (T)-1) return (T)((U)0 - (U)a);                                   \
        T q = (T)(a / b);                                                          \
        if ((T)(a % b) != (T)0 && ((a < (T)0) != (b < (T)0))) q = (T)(q - 1);     \
        return q;                                                                  \
    }                                                                              \
    FA_DEV T fa_mod(T a, T b) {                                                    \
        if (b == (T)0 || b == (T)-1) return (T)0;                                  \
        T r = (T)(a % b);                                                          \
        if (r != (T)0 && ((r < (T)0) != (b < (T)0))) r = (T)(r + b);               \
        return r;                                                                  \
    }                                                                              \
    FA_DEV T fa_pow(T a, T b) {                                                    \
        if (b < (T)0) return a == (T)1 ? (T)1 : (a == (T)-1 ? ((b & 1) ? (T)-1 : (T)1) : (T)0); \
        fa_u64 base = (fa_u64)(long long)a, r = 1, e = (fa_u64)b;                  \
        while (e) { if (e & 1ULL) r *= base; base *= base; e >>= 1; }              \
        return (T)r;                                                               \
    }

#define FA_UNSIGNED_INT(T)                                                         \
    FA_DEV T fa_abs(T a) { return a; }                                             \
    FA_DEV T fa_sign(T a) { return (T)(a > (T)0); }                                \
    FA_DEV T fa_relu(T a) { return a; }                                            \
    FA_DEV T fa_maximum(T a, T b) { return a > b ? a : b; }                        \
    FA_DEV T fa_minimum(T a, T b) { return a < b ? a : b; }                        \
    FA_DEV T fa_floordiv(T a, T b) { return b == (T)0 ? (T)0 : (T)(a / b); }       \
    FA_DEV T fa_mod(T a, T b) { return b == (T)0 ? (T)0 : (T)(a % b); }            \
    FA_DEV T fa_pow(T a, T b) {                                                    \
        fa_u64 base = (fa_u64)a, r = 1, e = (fa_u64)b;                             \
        while (e) { if (e & 1ULL) r *= base; base *= base; e >>= 1; }              \
        return (T)r;                                                               \
    }

FA_SIGNED_INT(signed char, unsigned char)
FA_SIGNED_INT(short, unsigned short)
FA_SIGNED_INT(int, unsigned int)
FA_SIGNED_INT(long long, unsigned long long)
FA_UNSIGNED_INT(unsigned char)
FA_UNSIGNED_INT(unsigned short)
FA_UNSIGNED_INT(unsigned int)
FA_UNSIGNED_INT(unsigned long long)

FA_DEV bool fa_logical_not(bool a) { return !a; }
FA_DEV bool fa_maximum(bool a, bool b) { return a || b; }
FA_DEV bool fa_minimum(bool a, bool b) { return a && b; }

template <typename T>
FA_DEV T fa_where(bool c, T a, T b) { return c ? a : b; }

// nan_guard(g, v): the NaN-safe derivative rules' mask: g itself (an exact zero) where g == 0, else v
template <typename T>
FA_DEV T fa_nan_guard(T g, T v) { return g == (T)0 ? g : v; }

// ---------------------------------------------------------------------------
// Casts: fa_cast<To>(v)
// ---------------------------------------------------------------------------

template <typename To>
struct FaCast {
    template <typename F>
    static __device__ __forceinline__ To run(F v) { return (To)v; }
};
template <>
struct FaCast<bool> {
    template <typename F>
    static __device__ __forceinline__ bool run(F v) { return v != (F)0; }   // nan -> true
};
// integers from floats: truncate to int64 (its minimum for NaN, infinities and values beyond its
// range: a GPU conversion would saturate instead), then wrap to the width (numpy on x86)
FA_DEV long long fa_f2i64(double v) {
    return (v >= -9223372036854775808.0 && v < 9223372036854775808.0) ? (long long)v : (long long)(1ULL << 63);
}
#define FA_CAST_VIA_I64(T)                                                         \
    template <>                                                                    \
    struct FaCast<T> {                                                             \
        template <typename F>                                                      \
        static __device__ __forceinline__ T run(F v) { return (T)v; }              \
        static __device__ __forceinline__ T run(float v) { return (T)fa_f2i64(v); }    \
        static __device__ __forceinline__ T run(double v) { return (T)fa_f2i64(v); }   \
    };
FA_CAST_VIA_I64(signed char)
FA_CAST_VIA_I64(short)
FA_CAST_VIA_I64(int)
FA_CAST_VIA_I64(long long)
FA_CAST_VIA_I64(unsigned char)
FA_CAST_VIA_I64(unsigned short)
FA_CAST_VIA_I64(unsigned int)
template <>
struct FaCast<unsigned long long> {
    template <typename F>
    static __device__ __forceinline__ fa_u64 run(F v) { return (fa_u64)v; }
    static __device__ __forceinline__ fa_u64 run(float v) { return run((double)v); }
    static __device__ __forceinline__ fa_u64 run(double v) {
        return (v >= 9223372036854775808.0 && v < 18446744073709551616.0) ? (fa_u64)v : (fa_u64)fa_f2i64(v);
    }
};

template <typename To, typename F>
FA_DEV To fa_cast(F v) { return FaCast<To>::run(v); }

// ---------------------------------------------------------------------------
// Index helpers
// ---------------------------------------------------------------------------

// First index and step of a grid-stride loop over a flat range, one thread per element.
FA_DEV fa_idx fa_thread_start() { return (fa_idx)blockIdx.x * (fa_idx)blockDim.x + (fa_idx)threadIdx.x; }
FA_DEV fa_idx fa_thread_step() { return (fa_idx)gridDim.x * (fa_idx)blockDim.x; }

#endif  // FA_ELEMENTWISE_CU

// ---------------------------------------------------------------------------
// Self-test: instantiate every helper for every dtype (only when compiled on its own)
// ---------------------------------------------------------------------------
#ifndef FA_RENDERED
#ifndef FA_ELEMENTWISE_SELFTEST
#define FA_ELEMENTWISE_SELFTEST
template <typename T>
FA_DEV T fa_selftest_numeric(T a, T b) {
    T r = fa_abs(a) + fa_sign(b) + fa_relu(a) + fa_maximum(a, b) + fa_minimum(a, b);
    r = (T)(r + fa_floordiv(a, b) + fa_mod(a, b) + fa_pow(a, b));
    return fa_where(a < b, r, fa_cast<T>(fa_cast<bool>(r)));
}
template <typename T>
FA_DEV T fa_selftest_float(T a) {
    T r = fa_exp(a) + fa_log(a) + fa_log1p(a) + fa_expm1(a) + fa_sqrt(a) + fa_sin(a) + fa_cos(a)
        + fa_tan(a) + fa_tanh(a) + fa_sigmoid(a) + fa_erf(a) + fa_floor(a) + fa_ceil(a) + fa_round(a);
    return r + (T)(fa_isnan(a) + fa_isinf(a) + fa_isfinite(a));
}
#define FA_SELFTEST_T(T) out[k++] = fa_cast<double>(fa_selftest_numeric<T>(fa_cast<T>(x[0]), fa_cast<T>(x[1])));
extern "C" __global__ void fa_selftest_elementwise(const double* x, double* out) {
    int k = 0;
    FA_SELFTEST_T(signed char) FA_SELFTEST_T(short) FA_SELFTEST_T(int) FA_SELFTEST_T(long long)
    FA_SELFTEST_T(unsigned char) FA_SELFTEST_T(unsigned short) FA_SELFTEST_T(unsigned int)
    FA_SELFTEST_T(unsigned long long) FA_SELFTEST_T(float) FA_SELFTEST_T(double)
    out[k++] = fa_selftest_float<float>((float)x[0]) + fa_selftest_float<double>(x[0]);
    out[k++] = fa_cast<double>(fa_logical_not(fa_cast<bool>(x[2])) ^ fa_maximum(true, fa_cast<bool>(x[3])));
    out[k++] = (double)fa_thread_start() + (double)fa_thread_step();
}
#endif
#endif
