// The native training loop: epochs x mini-batches, forward + backward, optimizer update, all in C++.
//
// Python is touched once per reporting interval (Trainer::run(n_epochs)), never per layer or mini-batch.
//
//   theta (nparams)          the network's flat buffer, updated in place: W1, b1, W2, b2, ...
//   X (n0 x m), Y (nL x m)   row-major, examples are columns (as MLP<T>)
//   per step:  batch columns gathered into Xb (n0 x mb) / Yb (nL x mb) through a seeded permutation,
//              J and grad by MLP<T>::backward (the one implementation of the passes, mlp.hpp: dropout
//              masks keyed by (seed, step = the global step, layer, unit, example) drawn once as bytes, the
//              lean or wide path chosen by sizes), theta -= optimizer update (gd | momentum | adam).
//
// Reproducibility: the permutation of epoch e is a Fisher-Yates shuffle driven by Philox keyed by the seed
// (a key distinct from the dropout key) and counter (i, e): it depends on (seed, epoch, m) only. Every
// reduction runs in a fixed order and every partition of work depends on sizes only, so theta after
// training is bit-identical for any thread count.
//
// Interruption: the caller's poll() runs between mini-batches on the calling thread (never inside an
// OpenMP region). When it asks to stop, theta and the optimizer state go back to their values at the
// start of the unfinished epoch: the caller sees the parameters of the last FINISHED epoch.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "mlp.hpp"
#include "small_layers.hpp"
#include "train_history.hpp"

namespace dnnkit {

enum class Optimizer : int { gd = 0, momentum = 1, adam = 2 };

inline Optimizer parse_optimizer(const std::string& s) {
    if (s == "gd") return Optimizer::gd;
    if (s == "momentum") return Optimizer::momentum;
    if (s == "adam") return Optimizer::adam;
    throw std::invalid_argument("unknown optimizer '" + s + "'");
}

struct TrainOptions {
    Optimizer optimizer = Optimizer::gd;
    double lr = 0.01;
    double beta = 0.9;                                  // momentum: v = beta v + (1 - beta) g
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;      // adam (bias-corrected, course form)
    double l2 = 0.0, l1 = 0.0;
    std::vector<double> keep;                           // keep[l], l = 0 (input) .. L-1; empty = none
    uint64_t seed = 0;
    int batch_size = 0;                                 // <= 0 or >= m: full batch (no shuffle needed)
};

// Statistics of one epoch (Trainer::run gathers them for the last epoch of each call only; NaN for an
// epoch whose statistics were not gathered). cost / error are the means over the epoch's mini-batches (weighted by their
// sizes) of the values each step computed before its update, with dropout and regularization on
// (as Keras' running training metrics); error is NaN for mse. grad_norms[l-1] is the mean over the
// epoch's steps of ||dW[l]||_F.
struct EpochStats {
    double cost = 0.0, error = 0.0;
    std::vector<double> grad_norms;
    int steps = 0;
    // zeros for a new epoch of a net with L layers (the norms' storage is kept: no allocation per epoch)
    void reset(int L) {
        cost = error = 0.0;
        grad_norms.assign(size_t(L), 0.0);
        steps = 0;
    }
};

// What one Trainer::run call reports and when it returns (see train_history.hpp).
struct ReportPlan {
    long long log_every = 0;   // report global epoch e when e % log_every == 0 (0: only last_epoch)
    long long last_epoch = 0;  // ... and when e == last_epoch (the fit's final epoch; 0: the call's last)
    double time_budget = std::numeric_limits<double>::infinity();  // return at the first epoch boundary after
    double t_offset = 0.0;     // seconds since fit started when this call began (the rows' time column)
    bool reported(long long e) const { return (log_every > 0 && e % log_every == 0) || e == last_epoch; }
};

struct RunResult {
    int epochs = 0;             // finished in this call
    bool interrupted = false;   // poll() / stop_at_step: the unfinished epoch was rolled back
    bool stopped_early = false; // the native early stopping asked to stop after the last finished epoch
};

// Fisher-Yates permutation of [0, m) for one epoch, from Philox keyed by the seed (shuffle key).
inline void epoch_permutation(uint64_t seed, uint64_t epoch, std::vector<int>& perm) {
    const int m = int(perm.size());
    for (int i = 0; i < m; ++i) perm[i] = i;
    const uint64_t key = seed ^ 0x9E3779B97F4A7C15ull;  // independent of the dropout stream (key = seed)
    uint32_t r[4];
    for (int i = m - 1; i > 0; --i) {
        if (((m - 1 - i) & 1) == 0)
            Philox::block(key, uint32_t(i), uint32_t(epoch), uint32_t(epoch >> 32), 0x5348u /* "SH" */, r);
        const int lane = ((m - 1 - i) & 1) * 2;
        const uint64_t u = (uint64_t(r[lane]) << 32) | r[lane + 1];
        // j uniform in [0, i]: high 64 bits of u * (i + 1) (Lemire; bias < 2^-32)
        const int j = int((unsigned __int128)u * uint64_t(i + 1) >> 64);
        std::swap(perm[i], perm[j]);
    }
}

// sum of g[q]^2 in double over n values: blocks of SUMSQ_BLOCK values, each summed with 8 interleaved
// partial sums (vectorisable; a single running sum is one dependent add per value, ~0.13 ms of a medium-net
// step), the block sums added in block order. The order depends on n only: the same bits for any thread count.
constexpr size_t SUMSQ_BLOCK = 16384;
template <class T>
DNNKIT_ALWAYS_INLINE double sum_squares_block(const T* g, size_t n) {
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t q = 0;
    for (; q + 8 <= n; q += 8)
        for (int t = 0; t < 8; ++t) p[t] += double(g[q + t]) * double(g[q + t]);
    for (; q < n; ++q) p[q & 7] += double(g[q]) * double(g[q]);
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}
template <class T>
inline double sum_squares(const T* g, size_t n) {
    const long long nb = (long long)((n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK);
    if (nb <= 1) return sum_squares_block(g, n);
    std::vector<double> part(size_t(nb), 0.0);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (num_threads() > 1)
    for (long long b = 0; b < nb; ++b) {
        const size_t q0 = size_t(b) * SUMSQ_BLOCK;
        part[size_t(b)] = sum_squares_block(g + q0, std::min(SUMSQ_BLOCK, n - q0));
    }
    double s = 0.0;
    for (double v : part) s += v;
    return s;
}

// The optimizer's coefficients of one step (adam's bias corrections: two pow per step, not per range).
template <class T>
struct UpdateCoefs {
    T lr, b, b1m, b1, b2, b2m, eps, c1, c2;
};

// theta -= update(grad) on [k0, k1) (elementwise: any split of the parameters gives the same bits), and with
// `sumsq` the squares of grad[k0, k1) summed as sum_squares_block sums them. Compiled for the baseline ISA and for
// AVX2 (run-time choice): no FMA, IEEE-exact sqrt and division, the same fixed-lane sums: the same bits.
template <class T>
DNNKIT_ALWAYS_INLINE void update_piece(Optimizer opt, const UpdateCoefs<T>& c, T* __restrict theta,
                                       const T* __restrict g, T* __restrict v, T* __restrict s, size_t k0, size_t k1,
                                       double* sumsq) {
    if (sumsq) *sumsq = sum_squares_block(g + k0, k1 - k0);
    const T lr = c.lr;
    if (opt == Optimizer::gd) {
        for (size_t k = k0; k < k1; ++k) theta[k] -= lr * g[k];
    } else if (opt == Optimizer::momentum) {
        const T b = c.b, b1m = c.b1m;
        for (size_t k = k0; k < k1; ++k) {
            v[k] = b * v[k] + b1m * g[k];
            theta[k] -= lr * v[k];
        }
    } else {
        const T c1 = c.c1, c2 = c.c2, b1 = c.b1, b2 = c.b2, b1m = c.b1m, b2m = c.b2m, eps = c.eps;
        for (size_t k = k0; k < k1; ++k) {
            v[k] = b1 * v[k] + b1m * g[k];
            s[k] = b2 * s[k] + b2m * g[k] * g[k];
            theta[k] -= lr * (v[k] * c1) / (std::sqrt(s[k] * c2) + eps);
        }
    }
}
template <class T>
__attribute__((noinline)) void update_piece_base(Optimizer opt, const UpdateCoefs<T>& c, T* theta, const T* g, T* v,
                                                 T* s, size_t k0, size_t k1, double* sumsq) {
    update_piece(opt, c, theta, g, v, s, k0, k1, sumsq);
}
#if defined(__x86_64__) || defined(__i386__)
template <class T>
__attribute__((noinline, target("avx2"))) void update_piece_avx2(Optimizer opt, const UpdateCoefs<T>& c, T* theta,
                                                                 const T* g, T* v, T* s, size_t k0, size_t k1,
                                                                 double* sumsq) {
    update_piece(opt, c, theta, g, v, s, k0, k1, sumsq);
}
#endif
template <class T>
inline void update_piece_dispatch(Optimizer opt, const UpdateCoefs<T>& c, T* theta, const T* g, T* v, T* s, size_t k0,
                                  size_t k1, double* sumsq) {
#if defined(__x86_64__) || defined(__i386__)
    if (simd::level() >= simd::avx2) return update_piece_avx2(opt, c, theta, g, v, s, k0, k1, sumsq);
#endif
    update_piece_base(opt, c, theta, g, v, s, k0, k1, sumsq);
}

// ---------------------------------------------------------------------------------------------------------
template <class T>
class Trainer {
   public:
    Trainer(Arch arch, TrainOptions opt, const T* X, const T* Y, int m)
        : arch_(arch), o_(std::move(opt)), X_(X), Y_(Y), m_(m), main_(arch), tail_(arch) {
        if (m < 1) throw std::invalid_argument("need at least one example");
        if (!(o_.lr > 0.0) || !std::isfinite(o_.lr)) throw std::invalid_argument("learning rate must be > 0");
        if (int(o_.keep.size()) > arch_.L()) throw std::invalid_argument("keep has more entries than layers");
        bs_ = (o_.batch_size <= 0 || o_.batch_size >= m) ? m : o_.batch_size;
        full_ = bs_ == m;
        grad_.assign(arch_.nparams, T(0));
        if (o_.optimizer != Optimizer::gd) v_.assign(arch_.nparams, T(0));
        if (o_.optimizer == Optimizer::adam) s_.assign(arch_.nparams, T(0));
        dp_.keep = o_.keep;
        dp_.seed = o_.seed;
        if (!full_) {
            perm_.resize(m);
            Xb_.resize(size_t(arch_.n(0)) * bs_);
            Yb_.resize(size_t(arch_.n(arch_.L())) * bs_);
        }
        id_.train_cost = log_.add("train_cost", 1);
        id_.train_error = log_.add("train_error", 1);
        id_.dev_cost = log_.add("dev_cost", 1);
        id_.dev_error = log_.add("dev_error", 1);
        id_.grad_norms = log_.add("grad_norms", arch_.L());
        id_.time = log_.add("time", 1);
        if (SmallNet<T>::eligible(arch_)) small_.reset(new SmallNet<T>(arch_));  // tiny nets: fused step
    }

    // ---- what the loop records besides the training statistics
    // Validation data (n0 x md, nL x md; kept alive by the caller): dev_cost / dev_error of every reported
    // epoch, a full pass without dropout or regularization with the parameters at the end of the epoch.
    void set_validation(const T* Xd, const T* Yd, int md) {
        if (md < 1) throw std::invalid_argument("validation needs at least one example");
        Xd_ = Xd;
        Yd_ = Yd;
        md_ = md;
    }
    // train_eval="full": train_cost / train_error of a reported epoch are a full pass over the training set
    // (no dropout, with regularization) at the end of the epoch instead of the running means.
    void set_train_eval_full(bool full) { train_full_ = full; }
    // dnnkit.EarlyStopping evaluated natively on each reported row (monitor: a series name).
    void set_early_stopping(const std::string& monitor, long long patience, double min_delta, bool restore_best) {
        const int id = log_.find(monitor);
        if (id < 0 || log_.series()[size_t(id)].width != 1)
            throw std::invalid_argument("unknown early-stopping monitor '" + monitor + "'");
        es_ = NativeEarlyStopping<T>{};
        es_.on = true;
        es_.monitor = id;
        es_.patience = patience;
        es_.min_delta = min_delta;
        es_.restore_best = restore_best;
    }
    const NativeEarlyStopping<T>& early_stopping() const { return es_; }
    const HistoryLog& history() const { return log_; }
    // A row for the last finished epoch when it has none yet (e.g. Python was interrupted between calls
    // that ended on an unreported epoch): the training statistics NaN, the evaluations computed.
    void finish_row(const T* theta, double t) {
        if (epoch_ > 0 && (long long)epoch_ > log_.last_epoch()) record(theta, (long long)epoch_, nullptr, t);
    }

    uint64_t step() const { return step_; }
    uint64_t epoch() const { return epoch_; }
    int batch_size() const { return bs_; }
    int steps_per_epoch() const { return (m_ + bs_ - 1) / bs_; }
    const std::vector<T>& grad() const { return grad_; }

    // Runs up to n epochs on theta (in place). poll() is called between mini-batches (the caller decides
    // how often it does real work); when it returns true, or when the global step reaches stop_at_step
    // (a test hook that simulates Ctrl-C), the unfinished epoch is rolled back and run returns early.
    // Returns the number of epochs finished; `last` holds the statistics of the last finished one.
    // rep says which epochs get a history row (and when to return early, for a progress bar).
    template <class Poll>
    RunResult run(T* theta, int n, Poll&& poll, const ReportPlan& rep,
                  uint64_t stop_at_step = std::numeric_limits<uint64_t>::max()) {
        ReportPlan plan = rep;
        if (plan.last_epoch <= 0) plan.last_epoch = (long long)epoch_ + n;
        if (!prefetch_worth()) {
            // (A call of a few steps runs them alone: starting the helper, often asleep since the last call, and
            // joining it costs more than it saves; e.g. a loop of fit(epochs=1) calls.)
            if (!helper_worth() || uint64_t(n) * uint64_t(steps_per_epoch()) < 16)
                return run_steps(theta, n, poll, plan, stop_at_step, false);
            // Small nets without dropout, batches of at least SMALL_SPLIT_MIN examples: the fused step is two
            // parts of examples (SmallNet::split_at). A second thread, started once for the whole call, takes
            // part 1 of each step when it is offered; when that thread is late (its core busy with another
            // program), this one runs part 1 itself rather than wait, so a busy machine costs no more than one
            // thread. Who runs a part never changes its bits. Both threads spin only while this call trains.
            std::atomic<bool> done{false};
            std::exception_ptr err;
            RunResult result;
#pragma omp parallel num_threads(2)
            {
                if (omp_get_thread_num() == 0) {
                    small_->offer_parts(omp_get_num_threads() >= 2);  // 1 thread: inside another parallel region
                    try {
                        result = run_steps(theta, n, poll, plan, stop_at_step, false);
                    } catch (...) {
                        err = std::current_exception();
                    }
                    small_->offer_parts(false);
                    done.store(true, std::memory_order_release);
                } else {
                    small_->serve(done);
                }
            }
            if (err) std::rethrow_exception(err);
            return result;
        }
        // Small nets with dropout: the Philox masks are ~30% of a step, and the step itself is one thread's
        // work (the lean path). A second thread draws the masks of the coming steps into a ring while this
        // one computes; the masks are a pure function of (seed, step, layer, unit, example), so the result is
        // bit-identical to drawing them inline. Both threads spin only while this call trains.
        const uint64_t first = step_, total = uint64_t(n) * uint64_t(steps_per_epoch());
        for (int r = 0; r < kRing; ++r) ring_[r].tag.store(0, std::memory_order_relaxed);
        producer_failed_.store(false, std::memory_order_relaxed);
        std::atomic<bool> done{false};
        std::exception_ptr err, perr;  // no exception may leave the parallel region (std::terminate)
        RunResult result;
#pragma omp parallel num_threads(2)
        {
            const bool two = omp_get_num_threads() >= 2;  // e.g. 1 when called inside another parallel region
            if (omp_get_thread_num() == 0) {
                try {
                    result = run_steps(theta, n, poll, plan, stop_at_step, two);
                } catch (...) {
                    err = std::current_exception();
                }
                done.store(true, std::memory_order_release);
            } else {
              try {
                for (uint64_t s = first; s < first + total && !done.load(std::memory_order_acquire); ++s) {
                    MaskSlot& sl = ring_[s % kRing];
                    for (int spin = 0; sl.tag.load(std::memory_order_acquire) != 0; ++spin) {
                        if (done.load(std::memory_order_acquire)) break;
                        spin_relax(spin);
                    }
                    if (done.load(std::memory_order_acquire)) break;
                    const uint64_t k = (s - first) % uint64_t(steps_per_epoch());
                    draw_masks(s, std::min(bs_, m_ - int(k) * bs_), sl);
                    sl.tag.store(s + 1, std::memory_order_release);
                }
              } catch (...) {  // e.g. bad_alloc: the consumer, waiting for this step's masks, must not spin forever
                perr = std::current_exception();
                producer_failed_.store(true, std::memory_order_release);
              }
            }
        }
        if (perr) std::rethrow_exception(perr);
        if (err) std::rethrow_exception(err);
        return result;
    }

   private:
    // ---- mask prefetch (see run)
    static constexpr int kRing = 8;
    struct MaskSlot {
        PassMasks masks;  // per layer (n[l] x mb), none where no dropout
        std::atomic<uint64_t> tag{0};  // step + 1 once drawn; 0 once consumed (free)
    };
    std::unique_ptr<MaskSlot[]> ring_{new MaskSlot[kRing]};
    std::atomic<bool> producer_failed_{false};

    bool helper_worth() const {
        return small_ && num_threads() >= 2 && SmallNet<T>::split_at(bs_) < bs_;
    }
    bool prefetch_worth() const {
        bool any = false;
        for (int l = 0; l < int(dp_.keep.size()); ++l) any = any || dp_.on(l);
        return any && num_threads() >= 2 && lean_worth(arch_, bs_);
    }
    // The masks of step `step` over mb examples into a ring slot: the same draw as MLP<T>::masks (dropout.hpp),
    // on this (the prefetch) thread only.
    void draw_masks(uint64_t step, int mb, MaskSlot& sl) const {
        sl.masks.draw(dp_, arch_.dims, mb, uint32_t(step), /*parallel=*/false);
    }

    // The training loop proper; with `prefetched`, the masks of each step come from the ring.
    template <class Poll>
    RunResult run_steps(T* theta, int n, Poll&& poll, const ReportPlan& rep, uint64_t stop_at_step,
                        bool prefetched) {
        using clock = std::chrono::steady_clock;
        const auto t_start = clock::now();
        auto now_t = [&]() { return rep.t_offset + std::chrono::duration<double>(clock::now() - t_start).count(); };
        RunResult res;
        const int L = arch_.L(), nL = arch_.n(L), n0 = arch_.n(0);
        const size_t P = arch_.nparams;
        // One step per epoch (full batch): a stop is decided before the step, so nothing needs rolling back and
        // the epoch needs no snapshot (a copy of theta and the optimizer state per step: ~5% of a medium-net step,
        // on one thread). Several steps per epoch: snapshot at the epoch's start, roll back on a stop.
        const bool one_step = steps_per_epoch() == 1;
        const bool budget = std::isfinite(rep.time_budget);  // else no clock reading between epochs
        EpochStats st;  // one for the call, reset per epoch
        for (int e = 0; e < n; ++e) {
            if (one_step && (poll() || step_ + 1 >= stop_at_step)) {  // the same epochs finish as with a rollback
                res.interrupted = true;
                res.epochs = e;
                finish_row(theta, now_t());
                return res;
            }
            // snapshot: the parameters and optimizer state of the last finished epoch
            if (!one_step) {
                snap_theta_.assign(theta, theta + P);
                snap_v_ = v_;
                snap_s_ = s_;
            }
            const uint64_t snap_step = step_;
            if (!full_) epoch_permutation(o_.seed, epoch_, perm_);
            // Statistics only for the epochs that get a history row: the lean path otherwise skips the cost.
            const bool stats = rep.reported((long long)epoch_ + 1);
            with_cost_ = stats && !train_full_;  // train_eval="full" evaluates the cost after the epoch
            st.reset(L);
            double cost_sum = 0.0, err_sum = 0.0;
            // On a stop (poll, stop_at_step) or an exception, the unfinished epoch is rolled back: theta, the
            // optimizer state and the step are those of the last finished epoch (and the mask ring, which assumes
            // that every run starts on an epoch boundary, stays in step).
            auto rollback = [&]() {
                if (!one_step) {  // one step: theta and the state change only in update(), the step's last action
                    std::copy(snap_theta_.begin(), snap_theta_.end(), theta);
                    std::copy(snap_v_.begin(), snap_v_.end(), v_.begin());
                    std::copy(snap_s_.begin(), snap_s_.end(), s_.begin());
                }
                step_ = snap_step;
            };
            try {
                for (int j0 = 0; j0 < m_; j0 += bs_) {
                    const int mb = std::min(bs_, m_ - j0);
                    const T* Xp = X_;
                    const T* Yp = Y_;
                    if (!full_) {  // gather the batch's columns (row by row: contiguous writes)
                        for (int i = 0; i < n0; ++i) {
                            const T* src = X_ + size_t(i) * m_;
                            T* dst = Xb_.data() + size_t(i) * mb;
                            for (int j = 0; j < mb; ++j) dst[j] = src[perm_[j0 + j]];
                        }
                        for (int i = 0; i < nL; ++i) {
                            const T* src = Y_ + size_t(i) * m_;
                            T* dst = Yb_.data() + size_t(i) * mb;
                            for (int j = 0; j < mb; ++j) dst[j] = src[perm_[j0 + j]];
                        }
                        Xp = Xb_.data();
                        Yp = Yb_.data();
                    }
                    dp_.step = uint32_t(step_);  // masks keyed by the global step
                    MLP<T>& net = (mb == bs_) ? main_ : tail_;
                    double J;
                    if (prefetched) {
                        MaskSlot& sl = ring_[step_ % kRing];
                        for (int spin = 0; sl.tag.load(std::memory_order_acquire) != step_ + 1; ++spin) {
                            if (producer_failed_.load(std::memory_order_acquire))
                                throw std::runtime_error("mask prefetch failed");  // the producer's exception is rethrown
                            spin_relax(spin);
                        }
                        J = pass(net, theta, Xp, Yp, mb, sl.masks.masks(), stats);
                        sl.tag.store(0, std::memory_order_release);
                    } else {
                        J = pass(net, theta, Xp, Yp, mb, net.masks(dp_, mb), stats);
                    }
                    if (stats) {
                        cost_sum += J * mb;
                        err_sum += (small_ && small_->wrong() >= 0.0) ? small_->wrong() : errors(net, Yp, mb);
                    }
                    if (net.post_done) finish_update(stats ? st.grad_norms.data() : nullptr);  // ran inside the pass
                    else update(theta, stats ? st.grad_norms.data() : nullptr);
                    ++step_;
                    ++st.steps;
                    if (!one_step && (poll() || step_ >= stop_at_step)) {
                        rollback();
                        res.interrupted = true;
                        res.epochs = e;
                        // the last finished epoch gets a row if it has none (its statistics were not gathered)
                        finish_row(theta, now_t());
                        return res;
                    }
                }
            } catch (...) {
                rollback();
                throw;
            }
            ++epoch_;
            st.cost = cost_sum / m_;
            st.error = arch_.loss == Loss::mse ? std::numeric_limits<double>::quiet_NaN()
                                               : err_sum / (arch_.loss == Loss::bce ? double(nL) * m_ : double(m_));
            for (double& g : st.grad_norms) g /= st.steps;
            res.epochs = e + 1;
            if (stats) {
                record(theta, (long long)epoch_, &st, now_t());
                if (es_.on && es_.update(log_.get(es_.monitor), (long long)epoch_, theta, P)) {
                    res.stopped_early = true;
                    return res;
                }
            }
            if (budget && e + 1 < n && now_t() - rep.t_offset >= rep.time_budget) return res;
        }
        return res;
    }

    // One history row for finished epoch `epoch` (theta: its parameters); st == nullptr: the training
    // statistics were not gathered (NaN), the evaluations are computed all the same.
    void record(const T* theta, long long epoch, const EpochStats* st, double t) {
        log_.begin_row();
        if (train_full_) {
            double err;
            const double J = evaluate(full_ws_, theta, X_, Y_, m_, o_.l2, o_.l1, err);
            log_.set(id_.train_cost, J);
            log_.set(id_.train_error, err);
        } else if (st) {
            log_.set(id_.train_cost, st->cost);
            log_.set(id_.train_error, st->error);
        }
        if (st) log_.set(id_.grad_norms, st->grad_norms.data());
        if (Xd_) {
            double err;
            const double J = evaluate(dev_ws_, theta, Xd_, Yd_, md_, 0.0, 0.0, err);
            log_.set(id_.dev_cost, J);
            log_.set(id_.dev_error, err);
        }
        log_.set(id_.time, t);
        log_.push(epoch);
    }

    // J (with the given regularization) and the error rate of one full pass without dropout over (X, Y):
    // the same pass, hence the same bits, as Network.cost / Network.forward on those arrays.
    double evaluate(std::unique_ptr<MLP<T>>& ws, const T* theta, const T* X, const T* Y, int m, double l2,
                    double l1, double& err) {
        if (!ws) ws.reset(new MLP<T>(arch_));
        const double J = ws->run(theta, X, Y, m, ByteMasks{}, l2, l1, nullptr, true);
        const int nL = arch_.n(arch_.L());
        err = arch_.loss == Loss::mse ? std::numeric_limits<double>::quiet_NaN()
                                      : errors(*ws, Y, m) / (arch_.loss == Loss::bce ? double(nL) * m : double(m));
        return J;
    }

   private:
    Arch arch_;
    TrainOptions o_;
    const T* X_;
    const T* Y_;
    int m_, bs_ = 0;
    bool full_ = true;
    MLP<T> main_, tail_;  // two workspaces: the full batches and the last, shorter one (no reallocation)
    std::vector<T> grad_, v_, s_, snap_theta_, snap_v_, snap_s_, Xb_, Yb_;
    std::vector<int> perm_;
    uint64_t step_ = 0, epoch_ = 0;
    bool with_cost_ = true;
    Dropout<T> dp_;  // keep / seed from the options; step set per mini-batch
    // history (train_history.hpp)
    HistoryLog log_;
    struct { int train_cost, train_error, dev_cost, dev_error, grad_norms, time; } id_{};
    NativeEarlyStopping<T> es_;
    const T* Xd_ = nullptr;
    const T* Yd_ = nullptr;
    int md_ = 0;
    bool train_full_ = false;
    std::unique_ptr<MLP<T>> dev_ws_, full_ws_;  // evaluation workspaces (their own sizes: no reallocation)
    std::unique_ptr<SmallNet<T>> small_;         // the fused step of tiny nets (small_layers.hpp), else null

    // One training pass (forward, cost when with_cost_, backward into grad_): the fused small-net step when the
    // net is tiny, else the BLAS passes of mlp.hpp. A[L] of `net` holds the outputs afterwards (errors()).
    // The BLAS passes run the update's pieces in their own parallel region when they can (MLP::post: the wide
    // path's one-region schedule; one fork/join fewer per step), with the coefficients of this step; the caller
    // then only adds up the norms (finish_update), else it runs update() itself. `theta` is updated in place: the
    // pass reads it only before the gradient is complete.
    double pass(MLP<T>& net, T* theta, const T* Xp, const T* Yp, int mb, const ByteMasks& bm, bool norms) {
        if (small_) return small_->run(net, theta, Xp, Yp, mb, bm, o_.l2, o_.l1, grad_.data(), with_cost_);
        if (parallel_update()) {
            post_theta_ = theta;
            post_coefs_ = coefs();
            post_norms_ = norms;
            net.post = typename MLP<T>::PostTasks{int(pieces().size()), &Trainer::post_piece, this};
        }
        struct Clear {
            MLP<T>& n;
            ~Clear() { n.post = typename MLP<T>::PostTasks{}; }
        } clear{net};
        return net.run(theta, Xp, Yp, mb, bm, o_.l2, o_.l1, grad_.data(), with_cost_);
    }
    T* post_theta_ = nullptr;
    UpdateCoefs<T> post_coefs_{};
    bool post_norms_ = false;
    static void post_piece(void* ctx, int i) {
        Trainer& t = *static_cast<Trainer*>(ctx);
        t.update_one_piece(t.post_theta_, t.pieces_[size_t(i)], t.post_coefs_, t.post_norms_);
    }

    // Misclassified entries (bce: output units; ce: examples) of the batch just computed by `net`.
    double errors(const MLP<T>& net, const T* Yp, int mb) const {
        const int L = arch_.L(), nL = arch_.n(L);
        const T* AL = net.A[L].data();
        if (arch_.loss == Loss::bce) {
            size_t wrong = 0;
            for (size_t k = 0; k < size_t(nL) * mb; ++k) wrong += (AL[k] > T(0.5)) != (Yp[k] > T(0.5));
            return double(wrong);
        }
        if (arch_.loss == Loss::ce) {
            size_t wrong = 0;
            for (int j = 0; j < mb; ++j) {
                int ia = 0, iy = 0;
                for (int i = 1; i < nL; ++i) {
                    if (AL[size_t(i) * mb + j] > AL[size_t(ia) * mb + j]) ia = i;
                    if (Yp[size_t(i) * mb + j] > Yp[size_t(iy) * mb + j]) iy = i;
                }
                wrong += ia != iy;
            }
            return double(wrong);
        }
        return 0.0;
    }

    UpdateCoefs<T> coefs() const {
        UpdateCoefs<T> c{};
        c.lr = T(o_.lr);
        if (o_.optimizer == Optimizer::momentum) {
            c.b = T(o_.beta);
            c.b1m = T(1.0 - o_.beta);
        } else if (o_.optimizer == Optimizer::adam) {
            const double t = double(step_ + 1);
            c.c1 = T(1.0 / (1.0 - std::pow(o_.beta1, t)));
            c.c2 = T(1.0 / (1.0 - std::pow(o_.beta2, t)));
            c.b1 = T(o_.beta1);
            c.b2 = T(o_.beta2);
            c.b1m = T(1.0 - o_.beta1);
            c.b2m = T(1.0 - o_.beta2);
            c.eps = T(o_.eps);
        }
        return c;
    }
    // theta -= update(grad) on [k0, k1) (+ the squares of grad there into *sumsq)
    void update_range(T* theta, size_t k0, size_t k1, const UpdateCoefs<T>& c, double* sumsq = nullptr) {
        update_piece_dispatch(o_.optimizer, c, theta, grad_.data(), v_.empty() ? nullptr : v_.data(),
                              s_.empty() ? nullptr : s_.data(), k0, k1, sumsq);
    }

    // The pieces of one update pass: per layer the W blocks of sum_squares (SUMSQ_BLOCK values each, so a
    // block's squares are summed exactly as sum_squares sums them), then b. Built once (sizes only).
    struct UpdatePiece {
        size_t k0, k1;
        int layer;  // > 0: a W block whose squares go to part[part]; 0: a bias (update only)
        int part;
    };
    std::vector<UpdatePiece> pieces_;
    std::vector<double> piece_sums_;
    // One piece of the update; with norms its W block's squares go to piece_sums_ (finish_update adds them up).
    void update_one_piece(T* theta, const UpdatePiece& u, const UpdateCoefs<T>& c, bool norms) {
        update_range(theta, u.k0, u.k1, c, norms && u.layer > 0 ? piece_sums_.data() + u.part : nullptr);
    }
    const std::vector<UpdatePiece>& pieces() {
        if (!pieces_.empty()) return pieces_;
        int np = 0;
        for (int l = 1; l <= arch_.L(); ++l) {
            const size_t w0 = arch_.woff[l], nw = size_t(arch_.n(l)) * arch_.n(l - 1);
            for (size_t q = 0; q < nw; q += SUMSQ_BLOCK) pieces_.push_back({w0 + q, w0 + std::min(nw, q + SUMSQ_BLOCK), l, np++});
            pieces_.push_back({size_t(arch_.boff[l]), size_t(arch_.boff[l]) + size_t(arch_.n(l)), 0, -1});
        }
        piece_sums_.assign(size_t(np), 0.0);
        return pieces_;
    }

    // theta -= update(grad). With norms (a reported epoch): also norms[l-1] += ||dW[l]||_F, from the same pass
    // over grad (one read of it, one parallel region instead of two): the per-block sums are sum_squares'
    // blocks and are added in block order, so the norms have sum_squares' bits.
    // Whether the update runs on several threads (a medium net's 109k parameters: ~3% of a step on one thread);
    // then the wide path may run it inside its own region (pass, MLP::post).
    bool parallel_update() const { return arch_.nparams > 32768 && num_threads() > 1; }
    void update(T* theta, double* norms = nullptr) {
        const size_t P = arch_.nparams;
        const bool par = parallel_update();
        const UpdateCoefs<T> c = coefs();
        if (!norms) {
            if (!par) return update_range(theta, 0, P, c);
#pragma omp parallel num_threads(num_threads())
            {
                const size_t t = size_t(omp_get_thread_num()), nt = size_t(omp_get_num_threads());
                update_range(theta, P * t / nt, P * (t + 1) / nt, c);
            }
            return;
        }
        const std::vector<UpdatePiece>& pc = pieces();
        if (!par) {  // small nets: no OpenMP call at all
            for (const UpdatePiece& u : pc) update_one_piece(theta, u, c, true);
        } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads())
            for (long long i = 0; i < (long long)pc.size(); ++i) update_one_piece(theta, pc[size_t(i)], c, true);
        }
        finish_update(norms);
    }
    // norms[l-1] += ||dW[l]||_F from the pieces' sums of squares (added in block order: sum_squares' bits).
    void finish_update(double* norms) {
        if (!norms) return;
        const std::vector<UpdatePiece>& pc = pieces();
        const double* part = piece_sums_.data();
        size_t i = 0;
        for (int l = 1; l <= arch_.L(); ++l) {
            double s = 0.0;
            int nb = 0;
            for (; i < pc.size() && pc[i].layer == l; ++i, ++nb) s = nb == 0 ? part[pc[i].part] : s + part[pc[i].part];
            for (; i < pc.size() && pc[i].layer == 0; ++i) {}
            norms[l - 1] += std::sqrt(s);
        }
    }
};

}  // namespace dnnkit
