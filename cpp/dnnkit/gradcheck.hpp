// Gradient checking engine: centered differences (J(theta + eps e_k) - J(theta - eps e_k)) / 2eps for many
// coordinates k, and along directions d, without running a full forward pass per perturbation.
//
// How:
// - The unperturbed pass is cached once (checker.hpp): Z[l], A[l] (after dropout), g(Z[l]) and the dropout scales
//   D[l] from the masks that pass drew (dropout.hpp: the one mask function).
// - Perturbing W[l][i,j] (b[l][i]) by s*eps changes only row i of Z[l], by s*eps*A[l-1][j,:] (s*eps).
//   Row i of A[l] changes by dA = g(Z + dz) - g(Z), times the same dropout scale (fixed masks: J is
//   deterministic). Z[l+1] changes by the rank-1 product W[l+1][:,i] x dA; deeper layers get full products,
//   batched: P perturbations (both signs) side by side as a (n, 2P*m) block, so the suffix runs as wide GEMMs.
// - Everything is propagated as DELTAS, never as perturbed totals: dZ[k+1] = W[k+1] dA[k]; dA[k] from
//   cancellation-free identities (relu: exactly dz or 0; tanh(a)-tanh(b) = tanh(a-b)(1 - tanh a tanh b);
//   sigmoid via expm1); the loss change per example from log1p/expm1 forms (softplus(z+d) - softplus(z) =
//   log1p(s(z) expm1(d)); logsumexp(z+d) - logsumexp(z) = log1p(sum_k p_k expm1(d_k))). So
//   J(theta+eps) - J(theta-eps) is computed to a relative accuracy near the unit roundoff, not to u*J/eps
//   as with two totals: only the O(eps^2) truncation of the centered difference remains.
// - The L2/L1 change for the one weight is in closed form.
// - Kinks: a relu/leaky unit whose pre-activation changes sign (or starts at 0) under the +-eps perturbation
//   (and is not dropped) makes that coordinate unreliable: flagged (KINK_ACT). L1 at |w| < eps: KINK_L1.
// - Batches depend on sizes only and each writes its own outputs: identical results for any thread count.
//   BLAS is single-threaded; parallelism is OpenMP over batches with per-thread scratch.
// - Fast path (relu / leaky_relu / linear hidden layers, on by default): in a linear region the perturbed forward
//   is exactly linear propagation, so per hidden unit the Jacobian G = dZ[L]/dA[l][i] (per example) is formed
//   once and each of the unit's coordinates costs O(n_L m); coordinates with a kink within reach (own unit, or
//   any downstream unit by precomputed margins) are routed to the general path above. See fast_unit.
// - Smooth path (tanh / sigmoid hidden layers, on by default): per (unit, example) the loss as a function of the
//   unit's pre-activation shift t is one analytic scalar function; its Taylor coefficients c1, c3 (computed once
//   per unit through the suffix by truncated Taylor arithmetic, GEMMs for the products) give every centered
//   difference of the unit's coordinates as (1/m) sum_k (c1 a + eps^2 c3 a^3), with a proven Cauchy bound on the
//   rest; coordinates whose bound fails go to the general path. The general path and the directional mode take
//   tanh / sigmoid deltas from a degree-5 polynomial with a per-element bound. SIMD chosen at run time (simd.hpp).
// - Directional mode: directions grouped by their first layer l0, both signs of all of them side by side as one
//   wide block, nothing below l0 recomputed.
//
// Files (cpp/dnnkit/gradcheck/): numerics.hpp (pure cancellation-free differences), checker.hpp (the class: the
// cached pass and shared delta helpers), general.hpp, directional.hpp, fast_path.hpp (one algorithm each),
// dispatch.hpp (coords: fast, smooth or general per coordinate), smooth.hpp (tanh / sigmoid series).
#pragma once
#include "gradcheck/checker.hpp"
#include "gradcheck/directional.hpp"
#include "gradcheck/dispatch.hpp"
#include "gradcheck/fast_path.hpp"
#include "gradcheck/general.hpp"
#include "gradcheck/numerics.hpp"
#include "gradcheck/smooth.hpp"
