// fastad/kernels/complex.cu: complex64 / complex128 for fastad's CUDA kernels.
//
// Start at `fa_complex<T>` (a struct {T re, im}: the layout of numpy's and CuPy's
// interleaved complex arrays, aligned as cuComplex) and its typedefs `fa_c64`,
// `fa_c128`; then the operators, the casts and the `fa_<intrinsic>` overloads.
// `fastad/codegen/cuda.py` pastes this file after elementwise.cu (and before
// reduce.cu) into every kernel that touches a complex dtype. The renderer only
// emits ops this file defines for complex (`cuda_types.COMPLEX_OPS`); others are
// refused at render time.
//
// numpy is the reference, special values (inf / nan parts, signed zeros) included:
//   * division is Smith's scaled algorithm, as numpy's, so large parts do not
//     overflow; multiplication is the plain formula, as numpy's;
//   * exp, log, sqrt, sinh, cosh, tanh, asinh, acosh, atanh and the ones derived
//     from them (sin = -i sinh(iz), cos, tan, asin, acos, atan) follow C99 Annex
//     G (what numpy gets from the C library); tanh at an infinite real part is
//     +-1 + 0j with the signs of the parts (the array API's case, the op table's);
//   * log1p, log2, log10, expm1, pow, sign and sigmoid use numpy's own formulas.
// Finite values use overflow-safe forms (scaled exp for large real parts,
// Kahan's forms for the inverse functions). docs/CUDA.md lists the remaining
// differences from numpy.
//
// The file compiles on its own (`nvcc --ptx -arch=sm_90 kernels/complex.cu`,
// pulling in elementwise.cu; without FA_RENDERED it ends in a self-test kernel)
// and as host C++ under the tests' emulation (no headers).

#ifndef FA_COMPLEX_CU
#define FA_COMPLEX_CU

#ifndef FA_ELEMENTWISE_CU
#include "elementwise.cu"
#endif

// ---------------------------------------------------------------------------
// The type
// ---------------------------------------------------------------------------

template <typename T>
struct __align__(2 * sizeof(T)) fa_complex {
    T re, im;
    fa_complex() = default;   // trivial: usable in __shared__ arrays (block reductions)
    FA_DEV fa_complex(T r, T i) : re(r), im(i) {}
    template <typename F>
    FA_DEV explicit fa_complex(F r) : re((T)r), im((T)0) {}   // (T)0, (T)1: identities, constants
};
typedef fa_complex<float> fa_c64;
typedef fa_complex<double> fa_c128;

// per precision: pi, where exp overflows, and where |z| is "large" (1 + z*z == z*z)
template <typename T> struct FaCx;
template <> struct FaCx<float> {
    static FA_DEV float pi() { return 3.14159265358979323846f; }
    static FA_DEV float max_log() { return 88.0f; }
    static FA_DEV float large() { return 4096.0f; }
    static FA_DEV float tanh_one() { return 11.0f; }   // |x| past which tanh(x) rounds to +-1
    static FA_DEV float log2e() { return 1.44269504088896340736f; }
    static FA_DEV float log10e() { return 0.434294481903251827651f; }
    static FA_DEV float ln2() { return 0.693147180559945309417f; }
};
template <> struct FaCx<double> {
    static FA_DEV double pi() { return 3.14159265358979323846; }
    static FA_DEV double max_log() { return 709.0; }
    static FA_DEV double large() { return 134217728.0; }   // 2^27
    static FA_DEV double tanh_one() { return 22.0; }
    static FA_DEV double log2e() { return 1.44269504088896340736; }
    static FA_DEV double log10e() { return 0.434294481903251827651; }
    static FA_DEV double ln2() { return 0.693147180559945309417; }
};

template <typename T> FA_DEV fa_complex<T> fa_cx(T r, T i) { return fa_complex<T>(r, i); }
FA_DEV float fa_nan_of(float) { return fa_nanf(); }
FA_DEV double fa_nan_of(double) { return fa_nan(); }
FA_DEV float fa_inf_of(float) { return fa_inff(); }
FA_DEV double fa_inf_of(double) { return fa_inf(); }

// ---------------------------------------------------------------------------
// Arithmetic and comparisons
// ---------------------------------------------------------------------------

template <typename T> FA_DEV fa_complex<T> operator+(fa_complex<T> a, fa_complex<T> b) { return fa_cx(a.re + b.re, a.im + b.im); }
template <typename T> FA_DEV fa_complex<T> operator-(fa_complex<T> a, fa_complex<T> b) { return fa_cx(a.re - b.re, a.im - b.im); }
template <typename T> FA_DEV fa_complex<T> operator-(fa_complex<T> a) { return fa_cx(-a.re, -a.im); }
template <typename T> FA_DEV fa_complex<T> operator*(fa_complex<T> a, fa_complex<T> b) {
    return fa_cx(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
}
// Smith's algorithm (numpy's): scale by the larger part of the divisor; a zero divisor gives inf / nan parts
template <typename T> FA_DEV fa_complex<T> operator/(fa_complex<T> a, fa_complex<T> b) {
    const T ar = fa_abs(b.re), ai = fa_abs(b.im);
    if (ar >= ai) {
        if (ar == (T)0 && ai == (T)0) return fa_cx(a.re / ar, a.im / ar);
        const T rat = b.im / b.re, scl = (T)1 / (b.re + b.im * rat);
        return fa_cx((a.re + a.im * rat) * scl, (a.im - a.re * rat) * scl);
    }
    const T rat = b.re / b.im, scl = (T)1 / (b.im + b.re * rat);
    return fa_cx((a.re * rat + a.im) * scl, (a.im * rat - a.re) * scl);
}
template <typename T> FA_DEV bool operator==(fa_complex<T> a, fa_complex<T> b) { return a.re == b.re && a.im == b.im; }
template <typename T> FA_DEV bool operator!=(fa_complex<T> a, fa_complex<T> b) { return !(a == b); }

// reductions (reduce.cu): complex sums and products, and the warp shuffle of both parts
template <typename T> FA_DEV fa_complex<T> fa_wadd(fa_complex<T> a, fa_complex<T> b) { return a + b; }
template <typename T> FA_DEV fa_complex<T> fa_wmul(fa_complex<T> a, fa_complex<T> b) { return a * b; }
template <typename T> FA_DEV fa_complex<T> fa_shfl_down(fa_complex<T> v, int o) {
    return fa_cx(__shfl_down_sync(0xffffffffu, v.re, o), __shfl_down_sync(0xffffffffu, v.im, o));
}

// ---------------------------------------------------------------------------
// Casts: real -> complex (imaginary 0), complex -> complex (per part),
// complex -> bool (either part nonzero), complex -> real (the real part, as numpy)
// ---------------------------------------------------------------------------

template <typename U>
struct FaCast<fa_complex<U> > {
    template <typename F>
    static __device__ __forceinline__ fa_complex<U> run(F v) { return fa_complex<U>((U)v, (U)0); }
};
template <typename To>
struct FaCastComplex {
    template <typename T>
    static __device__ __forceinline__ To run(fa_complex<T> v) { return fa_cast<To>(v.re); }
};
template <>
struct FaCastComplex<bool> {
    template <typename T>
    static __device__ __forceinline__ bool run(fa_complex<T> v) { return v.re != (T)0 || v.im != (T)0; }
};
template <typename U>
struct FaCastComplex<fa_complex<U> > {
    template <typename T>
    static __device__ __forceinline__ fa_complex<U> run(fa_complex<T> v) { return fa_complex<U>((U)v.re, (U)v.im); }
};
template <typename To, typename T>
FA_DEV To fa_cast(fa_complex<T> v) { return FaCastComplex<To>::run(v); }

// ---------------------------------------------------------------------------
// Parts and predicates
// ---------------------------------------------------------------------------

template <typename T> FA_DEV T fa_real(fa_complex<T> z) { return z.re; }
template <typename T> FA_DEV T fa_imag(fa_complex<T> z) { return z.im; }
template <typename T> FA_DEV fa_complex<T> fa_conj(fa_complex<T> z) { return fa_cx(z.re, -z.im); }
template <typename T> FA_DEV bool fa_isnan(fa_complex<T> z) { return fa_isnan(z.re) || fa_isnan(z.im); }
template <typename T> FA_DEV bool fa_isinf(fa_complex<T> z) { return fa_isinf(z.re) || fa_isinf(z.im); }
template <typename T> FA_DEV bool fa_isfinite(fa_complex<T> z) { return fa_isfinite(z.re) && fa_isfinite(z.im); }

// numpy's sign: z / |z|; an infinite part alone gives its unit direction, two or a nan give nan
template <typename T> FA_DEV fa_complex<T> fa_sign(fa_complex<T> z) {
    const T a = fa_hypot(z.re, z.im);
    if (fa_isnan(a)) return fa_cx(fa_nan_of(a), fa_nan_of(a));
    if (fa_isinf(a)) {
        if (fa_isinf(z.re) && fa_isinf(z.im)) return fa_cx(fa_nan_of(a), fa_nan_of(a));
        if (fa_isinf(z.re)) return fa_cx(z.re > (T)0 ? (T)1 : (T)-1, (T)0);
        return fa_cx((T)0, z.im > (T)0 ? (T)1 : (T)-1);
    }
    if (a == (T)0) return fa_cx((T)0, (T)0);
    return fa_cx(z.re / a, z.im / a);
}

// ---------------------------------------------------------------------------
// exp, log, sqrt and the hyperbolic functions (C99 Annex G special values)
// ---------------------------------------------------------------------------

template <typename T> FA_DEV fa_complex<T> fa_exp(fa_complex<T> z) {
    const T x = z.re, y = z.im;
    if (y == (T)0) return fa_cx(fa_exp(x), y);                         // real axis, nan and inf x too
    if (!fa_isfinite(y)) {
        if (fa_isinf(x) && x < (T)0) return fa_cx((T)0, fa_copysign((T)0, y));   // exp(-inf + i(inf|nan))
        if (fa_isinf(x)) return fa_cx(x, y - y);                        // (inf, nan)
        return fa_cx(y - y, y - y);                                     // nan, nan
    }
    if (x > FaCx<T>::max_log()) {   // exp(x) overflows where exp(x) * cos(y) may not: two halves
        const T h = fa_exp(x * (T)0.5);
        return fa_cx(h * fa_cos(y) * h, h * fa_sin(y) * h);
    }
    const T e = fa_exp(x);
    return fa_cx(e * fa_cos(y), e * fa_sin(y));
}

template <typename T> FA_DEV fa_complex<T> fa_log(fa_complex<T> z) {
    const T x = z.re, y = z.im;
    const T ax = fa_abs(x), ay = fa_abs(y);
    const T arg = fa_atan2(y, x);
    if (fa_isinf(ax) || fa_isinf(ay)) return fa_cx(fa_inf_of(x), arg);   // +inf, also with a nan part
    if (fa_isnan(x) || fa_isnan(y)) return fa_cx(x + y, x + y);
    const T big = ax > ay ? ax : ay, small = ax > ay ? ay : ax;
    if (big > (T)0.5 && big < (T)2)   // |z| near 1: log|z| without the cancellation of log(hypot)
        return fa_cx((T)0.5 * fa_log1p((big - (T)1) * (big + (T)1) + small * small), arg);
    return fa_cx(fa_log(fa_hypot(x, y)), arg);
}

template <typename T> FA_DEV fa_complex<T> fa_sqrt(fa_complex<T> z) {
    const T x = z.re, y = z.im;
    if (fa_isinf(y)) return fa_cx(fa_abs(y), y);
    if (fa_isnan(x)) return fa_cx(x, x + y);
    if (fa_isinf(x)) {
        if (x > (T)0) return fa_cx(x, fa_isnan(y) ? y : fa_copysign((T)0, y));
        return fa_cx(fa_isnan(y) ? y : (T)0, fa_copysign(-x, y));
    }
    if (fa_isnan(y)) return fa_cx(y, y);
    if (x == (T)0 && y == (T)0) return fa_cx((T)0, y);
    // t = sqrt((|x| + |z|) / 2), computed at a quarter of the scale when that sum could overflow
    const T ax = fa_abs(x);
    T t;
    if (ax > FaCx<T>::large() * FaCx<T>::large() || fa_abs(y) > FaCx<T>::large() * FaCx<T>::large())
        t = (T)2 * fa_sqrt((ax * (T)0.25 + fa_hypot(x * (T)0.25, y * (T)0.25)) * (T)0.5);
    else
        t = fa_sqrt((ax + fa_hypot(x, y)) * (T)0.5);
    if (x >= (T)0) return fa_cx(t, y / (t * (T)2));
    return fa_cx(fa_abs(y) / (t * (T)2), fa_copysign(t, y));
}

// sinh(x) cos(y) + i cosh(x) sin(y); past max_log the exponential is split in halves
template <typename T> FA_DEV fa_complex<T> fa_sinh(fa_complex<T> z) {
    const T x = z.re, y = z.im;
    if (!fa_isfinite(x) || !fa_isfinite(y)) {
        if (y == (T)0) return fa_cx(x, y);                               // (inf|nan, +-0)
        if (x == (T)0) return fa_cx(x, y - y);                           // (+-0, nan)
        if (fa_isinf(x) && fa_isfinite(y)) return fa_cx(x * fa_cos(y), fa_abs(x) * fa_sin(y));
        if (fa_isinf(x)) return fa_cx(fa_abs(x), y - y);                 // (inf, nan)
        return fa_cx(x + y - y, x + y - y);                              // nan, nan
    }
    if (y == (T)0) return fa_cx(fa_sinh(x), y);
    if (fa_abs(x) > FaCx<T>::max_log()) {
        const T e = fa_exp(fa_abs(x) * (T)0.5), h = e * (T)0.5;   // sinh, cosh = exp(|x|)/2 there
        return fa_cx((x < (T)0 ? -h : h) * fa_cos(y) * e, h * fa_sin(y) * e);
    }
    return fa_cx(fa_sinh(x) * fa_cos(y), fa_cosh(x) * fa_sin(y));
}

// cosh(x) cos(y) + i sinh(x) sin(y)
template <typename T> FA_DEV fa_complex<T> fa_cosh(fa_complex<T> z) {
    const T x = z.re, y = z.im;
    if (!fa_isfinite(x) || !fa_isfinite(y)) {
        if (y == (T)0) return fa_cx(fa_isinf(x) ? fa_abs(x) : x + x, fa_isnan(x) ? y : fa_copysign((T)0, x) * y);
        if (x == (T)0) return fa_cx(y - y, (T)0);                        // (nan, 0)
        if (fa_isinf(x) && fa_isfinite(y)) return fa_cx(fa_abs(x) * fa_cos(y), x * fa_sin(y));
        if (fa_isinf(x)) return fa_cx(fa_abs(x), y - y);                 // (inf, nan)
        return fa_cx(x + y - y, x + y - y);
    }
    if (y == (T)0) return fa_cx(fa_cosh(x), fa_copysign((T)0, x) * y);
    if (fa_abs(x) > FaCx<T>::max_log()) {
        const T e = fa_exp(fa_abs(x) * (T)0.5), h = e * (T)0.5;
        return fa_cx(h * fa_cos(y) * e, (x < (T)0 ? -h : h) * fa_sin(y) * e);
    }
    return fa_cx(fa_cosh(x) * fa_cos(y), fa_sinh(x) * fa_sin(y));
}

// Kahan's form: t = tan(y), s = sinh(x), rho = sqrt(1 + s^2); tanh = (rho s (1 + t^2) + i t) / (1 + s^2 (1 + t^2))
template <typename T> FA_DEV fa_complex<T> fa_tanh(fa_complex<T> z) {
    const T x = z.re, y = z.im;
    if (fa_isinf(x)) return fa_cx(fa_copysign((T)1, x), fa_copysign((T)0, y));   // the array API's case
    if (fa_isnan(x)) return fa_cx(x, y == (T)0 ? y : x);
    if (!fa_isfinite(y)) return fa_cx(x == (T)0 ? x : y - y, y - y);
    if (fa_abs(x) > FaCx<T>::tanh_one()) {   // tanh(x) is +-1 to working precision
        const T e = fa_exp((T)-2 * fa_abs(x));
        return fa_cx(fa_copysign((T)1, x), (T)4 * fa_sin(y) * fa_cos(y) * e);
    }
    const T t = fa_tan(y), beta = (T)1 + t * t, s = fa_sinh(x), rho = fa_sqrt((T)1 + s * s);
    const T den = (T)1 + beta * s * s;
    return fa_cx(beta * rho * s / den, t / den);
}

// the trigonometric functions through the hyperbolic ones: sin z = -i sinh(iz), cos z = cosh(iz), tan z = -i tanh(iz)
template <typename T> FA_DEV fa_complex<T> fa_sin(fa_complex<T> z) {
    const fa_complex<T> w = fa_sinh(fa_cx(-z.im, z.re));
    if (fa_isinf(w.re) && fa_isnan(w.im)) return fa_cx(w.im, fa_abs(w.re));   // (nan, +inf), as numpy
    return fa_cx(w.im, -w.re);
}
template <typename T> FA_DEV fa_complex<T> fa_cos(fa_complex<T> z) { return fa_cosh(fa_cx(-z.im, z.re)); }
template <typename T> FA_DEV fa_complex<T> fa_tan(fa_complex<T> z) {
    if (fa_isinf(z.im) && fa_isfinite(z.re))   // numpy (C99): the zero takes the sign of sin(2 re)
        return fa_cx(fa_copysign((T)0, fa_sin((T)2 * z.re)), fa_copysign((T)1, z.im));
    const fa_complex<T> w = fa_tanh(fa_cx(-z.im, z.re));
    return fa_cx(w.im, -w.re);
}

// ---------------------------------------------------------------------------
// numpy's own formulas: expm1, log1p, log2, log10, sigmoid, pow
// ---------------------------------------------------------------------------

template <typename T> FA_DEV fa_complex<T> fa_expm1(fa_complex<T> z) {
    if (!fa_isfinite(z) || (z.re == (T)0 && z.im == (T)0)) {   // the op table's rule: exp(z) - 1
        const fa_complex<T> e = fa_exp(z);
        return fa_cx(e.re - (T)1, e.im);
    }
    const T h = fa_sin(z.im * (T)0.5);
    return fa_cx(fa_expm1(z.re) * fa_cos(z.im) - (T)2 * h * h, fa_exp(z.re) * fa_sin(z.im));
}
template <typename T> FA_DEV fa_complex<T> fa_log1p(fa_complex<T> z) {
    return fa_cx(fa_log(fa_hypot(z.re + (T)1, z.im)), fa_atan2(z.im, z.re + (T)1));
}
template <typename T> FA_DEV fa_complex<T> fa_log2(fa_complex<T> z) {
    const fa_complex<T> w = fa_log(z);
    return fa_cx(w.re * FaCx<T>::log2e(), w.im * FaCx<T>::log2e());
}
template <typename T> FA_DEV fa_complex<T> fa_log10(fa_complex<T> z) {
    const fa_complex<T> w = fa_log(z);
    return fa_cx(w.re * FaCx<T>::log10e(), w.im * FaCx<T>::log10e());
}
template <typename T> FA_DEV fa_complex<T> fa_sigmoid(fa_complex<T> z) {   // 1 / (1 + exp(-z)), in complex
    const fa_complex<T> e = fa_exp(-z);
    return fa_cx((T)1, (T)0) / fa_cx((T)1 + e.re, (T)0 + e.im);
}
// C99 Annex G's product: the plain formula, except that an infinite factor gives an infinite
// product where the formula gives nan + nan i (what numpy's complex power gets from C)
template <typename T> FA_DEV fa_complex<T> fa_mul_annex_g(fa_complex<T> z, fa_complex<T> w) {
    T a = z.re, b = z.im, c = w.re, d = w.im;
    const T ac = a * c, bd = b * d, ad = a * d, bc = b * c;
    const fa_complex<T> p = fa_cx(ac - bd, ad + bc);
    if (!fa_isnan(p.re) || !fa_isnan(p.im)) return p;
    bool again = false;
    if (fa_isinf(a) || fa_isinf(b)) {
        a = fa_copysign(fa_isinf(a) ? (T)1 : (T)0, a);
        b = fa_copysign(fa_isinf(b) ? (T)1 : (T)0, b);
        if (fa_isnan(c)) c = fa_copysign((T)0, c);
        if (fa_isnan(d)) d = fa_copysign((T)0, d);
        again = true;
    }
    if (fa_isinf(c) || fa_isinf(d)) {
        c = fa_copysign(fa_isinf(c) ? (T)1 : (T)0, c);
        d = fa_copysign(fa_isinf(d) ? (T)1 : (T)0, d);
        if (fa_isnan(a)) a = fa_copysign((T)0, a);
        if (fa_isnan(b)) b = fa_copysign((T)0, b);
        again = true;
    }
    if (!again && (fa_isinf(ac) || fa_isinf(bd) || fa_isinf(ad) || fa_isinf(bc))) {
        if (fa_isnan(a)) a = fa_copysign((T)0, a);
        if (fa_isnan(b)) b = fa_copysign((T)0, b);
        if (fa_isnan(c)) c = fa_copysign((T)0, c);
        if (fa_isnan(d)) d = fa_copysign((T)0, d);
        again = true;
    }
    if (!again) return p;
    const T inf = fa_inf_of(a);
    return fa_cx(inf * (a * c - b * d), inf * (a * d + b * c));
}

// a ** b: 1 for b == 0; nan for a == 0 unless b is real and positive; integral real b with |b| < 100
// by repeated squaring (numpy's); otherwise exp(b log a)
template <typename T> FA_DEV fa_complex<T> fa_pow(fa_complex<T> a, fa_complex<T> b) {
    if (b.re == (T)0 && b.im == (T)0) return fa_cx((T)1, (T)0);
    if (a.re == (T)0 && a.im == (T)0) {
        if (b.re > (T)0 && b.im == (T)0) return fa_cx((T)0, (T)0);
        const T n = fa_nan_of(b.re);
        return fa_cx(n, n);
    }
    if (b.im == (T)0 && b.re == fa_trunc(b.re) && fa_abs(b.re) < (T)100) {
        int n = (int)b.re;
        if (n == 1) return a;
        if (n == 2) return a * a;
        if (n == 3) return a * a * a;
        fa_complex<T> r = fa_cx((T)1, (T)0), p = a;
        int m = n < 0 ? -n : n;
        while (true) {
            if (m & 1) r = r * p;
            m >>= 1;
            if (m == 0) break;
            p = p * p;
        }
        return n < 0 ? fa_cx((T)1, (T)0) / r : r;
    }
    return fa_exp(fa_mul_annex_g(b, fa_log(a)));
}

// ---------------------------------------------------------------------------
// Inverse functions: Kahan's forms ("Branch cuts for complex elementary functions"),
// with C99 Annex G's special values
// ---------------------------------------------------------------------------

// asinh: odd and conjugate-symmetric; computed on |x| + i|y|, the signs put back
template <typename T> FA_DEV fa_complex<T> fa_asinh(fa_complex<T> z) {
    const T x = fa_abs(z.re), y = fa_abs(z.im);
    T re, im;
    if (fa_isnan(z.re) || fa_isnan(z.im)) {
        if (fa_isinf(z.re)) return fa_cx(z.re, z.im);                    // (+-inf, nan)
        if (fa_isinf(z.im)) return fa_cx(y, z.re);                       // (inf, nan)
        if (z.im == (T)0) return fa_cx(z.re, z.im);                      // (nan, +-0)
        return fa_cx(z.re + z.im, z.re + z.im);
    }
    if (fa_isinf(x) || fa_isinf(y)) {
        re = x + y;
        im = fa_isinf(x) ? (fa_isinf(y) ? FaCx<T>::pi() * (T)0.25 : (T)0) : FaCx<T>::pi() * (T)0.5;
    } else if (x > FaCx<T>::large() || y > FaCx<T>::large()) {   // asinh z = log(2z) to working precision
        const fa_complex<T> w = fa_log(fa_cx(x, y));
        re = w.re + FaCx<T>::ln2();
        im = w.im;
    } else {   // asinh z = -i asin(iz), asin w = atan2(Re w, Re(sqrt(1-w) sqrt(1+w))) + i asinh(Im(conj(sqrt(1-w)) sqrt(1+w)))
        const fa_complex<T> w = fa_cx(-y, x);
        const fa_complex<T> s1 = fa_sqrt(fa_cx((T)1 - w.re, -w.im)), s2 = fa_sqrt(fa_cx((T)1 + w.re, w.im));
        const T a = fa_atan2(w.re, s1.re * s2.re - s1.im * s2.im);
        const T b = fa_asinh(s1.re * s2.im - s1.im * s2.re);
        re = b;
        im = -a;
    }
    return fa_cx(fa_copysign(re, z.re), fa_copysign(im, z.im));
}
template <typename T> FA_DEV fa_complex<T> fa_asin(fa_complex<T> z) {   // -i asinh(iz)
    if ((fa_isnan(z.re) || fa_isnan(z.im)) && (fa_isinf(z.re) || fa_isinf(z.im)))
        return fa_cx(z.re + z.im - z.im, fa_copysign(fa_inf_of(z.re), z.im));   // (nan, +-inf), the sign of im
    const fa_complex<T> w = fa_asinh(fa_cx(-z.im, z.re));
    return fa_cx(w.im, -w.re);
}

// acos z = 2 atan2(Re sqrt(1-z), Re sqrt(1+z)) + i asinh(Im(conj(sqrt(1+z)) sqrt(1-z)))
template <typename T> FA_DEV fa_complex<T> fa_acos(fa_complex<T> z) {
    const T x = z.re, y = z.im, pi = FaCx<T>::pi();
    if (fa_isnan(x) || fa_isnan(y)) {
        if (fa_isinf(x)) return fa_cx(y, -fa_abs(x));
        if (fa_isinf(y)) return fa_cx(x, -y);
        if (x == (T)0) return fa_cx(pi * (T)0.5, y);
        return fa_cx(x + y, x + y);
    }
    if (fa_isinf(x) || fa_isinf(y)) {
        T re;
        if (fa_isinf(y)) re = fa_isinf(x) ? (x > (T)0 ? pi * (T)0.25 : pi * (T)0.75) : pi * (T)0.5;
        else re = x > (T)0 ? (T)0 : pi;
        return fa_cx(re, fa_signbit(y) ? fa_abs(x) + fa_abs(y) : -(fa_abs(x) + fa_abs(y)));
    }
    if (fa_abs(x) > FaCx<T>::large() || fa_abs(y) > FaCx<T>::large()) {   // -i log(2z) up to signs
        const fa_complex<T> w = fa_log(fa_cx(fa_abs(x), fa_abs(y)));
        const T re = x >= (T)0 ? w.im : pi - w.im;
        const T im = w.re + FaCx<T>::ln2();
        return fa_cx(re, fa_signbit(y) ? im : -im);
    }
    const fa_complex<T> s1 = fa_sqrt(fa_cx((T)1 - x, -y)), s2 = fa_sqrt(fa_cx((T)1 + x, y));
    return fa_cx((T)2 * fa_atan2(s1.re, s2.re), fa_asinh(s2.re * s1.im - s2.im * s1.re));
}

// acosh z = asinh(Re(conj(sqrt(z-1)) sqrt(z+1))) + 2i atan2(Im sqrt(z-1), Re sqrt(z+1)); log(2z) far out
template <typename T> FA_DEV fa_complex<T> fa_acosh(fa_complex<T> z) {
    const T x = z.re, y = z.im, pi = FaCx<T>::pi();
    if (fa_isnan(x) || fa_isnan(y)) {
        if (fa_isinf(x) || fa_isinf(y)) return fa_cx(fa_inf_of(x), x + y);   // (inf, nan)
        if (x == (T)0) return fa_cx(y, pi * (T)0.5);
        return fa_cx(x + y, x + y);
    }
    if (fa_isinf(x) || fa_isinf(y)) {
        T im;
        if (fa_isinf(y)) im = fa_isinf(x) ? (x > (T)0 ? pi * (T)0.25 : pi * (T)0.75) : pi * (T)0.5;
        else im = x > (T)0 ? (T)0 : pi;
        return fa_cx(fa_inf_of(x), fa_copysign(im, y));
    }
    if (fa_abs(x) > FaCx<T>::large() || fa_abs(y) > FaCx<T>::large()) {
        const fa_complex<T> w = fa_log(z);
        return fa_cx(w.re + FaCx<T>::ln2(), w.im);
    }
    const fa_complex<T> s1 = fa_sqrt(fa_cx(x - (T)1, y)), s2 = fa_sqrt(fa_cx(x + (T)1, y));
    return fa_cx(fa_asinh(s1.re * s2.re + s1.im * s2.im), (T)2 * fa_atan2(s1.im, s2.re));
}

// atanh on |x| + i|y|: re = log1p(4x / ((1-x)^2 + y^2)) / 4, im = atan2(2y, (1-x)(1+x) - y^2) / 2; 1/z far out
template <typename T> FA_DEV fa_complex<T> fa_atanh(fa_complex<T> z) {
    const T x = fa_abs(z.re), y = fa_abs(z.im), half_pi = FaCx<T>::pi() * (T)0.5;
    T re, im;
    if (fa_isnan(z.re) || fa_isnan(z.im)) {
        if (fa_isinf(z.im)) return fa_cx(fa_copysign((T)0, z.re), fa_copysign(half_pi, z.im));
        if (fa_isinf(z.re) || z.re == (T)0) return fa_cx(fa_copysign((T)0, z.re), z.im + z.im);
        return fa_cx(z.re + z.im, z.re + z.im);
    }
    if (fa_isinf(x) || fa_isinf(y)) {
        re = (T)0;
        im = half_pi;
    } else if (x > FaCx<T>::large() || y > FaCx<T>::large()) {   // atanh z = 1/z + i pi/2 to working precision
        const fa_complex<T> r = fa_cx((T)1, (T)0) / fa_cx(x, y);
        re = r.re;
        im = half_pi;
    } else if (x == (T)1 && y == (T)0) {
        re = fa_inf_of(x);
        im = (T)0;
    } else {
        const T d = (T)1 - x, r = fa_hypot(d, y);
        if (r < (T)1e-8)   // next to +-1: log(4x / r^2) / 4, without r^2 underflowing
            re = (T)0.25 * fa_log((T)4 * x) - (T)0.5 * fa_log(r);
        else
            re = (T)0.25 * fa_log1p((T)4 * x / (d * d + y * y));
        im = (T)0.5 * fa_atan2((T)2 * y, d * ((T)1 + x) - y * y);
    }
    return fa_cx(fa_copysign(re, z.re), fa_copysign(im, z.im));
}
template <typename T> FA_DEV fa_complex<T> fa_atan(fa_complex<T> z) {   // -i atanh(iz)
    const fa_complex<T> w = fa_atanh(fa_cx(-z.im, z.re));
    return fa_cx(w.im, -w.re);
}

#endif  // FA_COMPLEX_CU

// ---------------------------------------------------------------------------
// Self-test: instantiate every helper for both precisions (only when compiled on its own)
// ---------------------------------------------------------------------------
#ifndef FA_RENDERED
#ifndef FA_COMPLEX_SELFTEST
#define FA_COMPLEX_SELFTEST
template <typename T>
FA_DEV fa_complex<T> fa_selftest_complex(fa_complex<T> a, fa_complex<T> b) {
    fa_complex<T> r = a + b - a * b / b + (-a) + fa_conj(a) + fa_sign(a) + fa_exp(a) + fa_log(a) + fa_sqrt(a);
    r = r + fa_sinh(a) + fa_cosh(a) + fa_tanh(a) + fa_sin(a) + fa_cos(a) + fa_tan(a) + fa_expm1(a) + fa_log1p(a);
    r = r + fa_log2(a) + fa_log10(a) + fa_sigmoid(a) + fa_pow(a, b) + fa_asinh(a) + fa_asin(a) + fa_acos(a);
    r = r + fa_acosh(a) + fa_atanh(a) + fa_atan(a) + fa_wadd(a, b) + fa_wmul(a, b) + fa_shfl_down(a, 1);
    r = r + fa_cast<fa_complex<T> >(fa_real(a) + fa_imag(b)) + fa_cast<fa_complex<T> >(fa_cast<fa_c64>(b));
    return fa_where(a == b || a != b || fa_isnan(a) || fa_isinf(a) || fa_isfinite(a) || fa_cast<bool>(a),
                    r, fa_nan_guard(a, b));
}
extern "C" __global__ void fa_selftest_complex_kernel(const fa_c64* x, const fa_c128* y, fa_c64* out, fa_c128* out2) {
    out[0] = fa_selftest_complex(x[0], x[1]);
    out2[0] = fa_selftest_complex(y[0], y[1]);
    out[1] = fa_cast<fa_c64>(fa_cast<double>(y[0]) + fa_cast<float>(x[0]));
}
#endif
#endif
