// The training history recorded by the native loop (train.hpp), and early stopping evaluated in that loop.
//
// The loop records one row per reported epoch (every log_every epochs and the last one) without returning
// to Python: Python reads the rows afterwards (or at a human rate for a progress bar) and enters its own
// code only when something needs it (a user callback, a Python-side early-stopping subclass).
//
// Rows are named series, so a new per-epoch quantity is one add() and one set() away:
//   width 1   one value per row (train_cost, train_error, dev_cost, dev_error, time)
//   width L   one value per layer per row (grad_norms: ||dW[l]||_F, l = 1..L)
// The epoch column (1-based count of finished epochs) is kept separately as integers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace dnnkit {

class HistoryLog {
   public:
    struct Series {
        std::string name;
        int width = 1;
        std::vector<double> data;  // rows x width, row-major
    };

    // Registers a series; returns its id. Only before the first row.
    int add(const std::string& name, int width) {
        if (!epoch_.empty()) throw std::logic_error("HistoryLog: series added after the first row");
        if (width < 1) throw std::invalid_argument("HistoryLog: width must be >= 1");
        for (const Series& s : series_)
            if (s.name == name) throw std::invalid_argument("HistoryLog: duplicate series " + name);
        series_.push_back(Series{name, width, {}});
        row_.resize(row_.size() + size_t(width), nan());
        offset_.push_back(row_.size() - size_t(width));
        return int(series_.size()) - 1;
    }
    int find(const std::string& name) const {
        for (size_t i = 0; i < series_.size(); ++i)
            if (series_[i].name == name) return int(i);
        return -1;
    }

    // The row being built: every value starts as NaN (not gathered), set() fills it, push() appends it.
    void begin_row() { std::fill(row_.begin(), row_.end(), nan()); }
    void set(int id, double v) { row_[offset_[size_t(id)]] = v; }
    void set(int id, const double* v) {
        const Series& s = series_[size_t(id)];
        std::copy(v, v + s.width, row_.begin() + std::ptrdiff_t(offset_[size_t(id)]));
    }
    double get(int id) const { return row_[offset_[size_t(id)]]; }  // of the row being built
    void push(long long epoch) {
        epoch_.push_back(epoch);
        for (size_t i = 0; i < series_.size(); ++i) {
            Series& s = series_[i];
            s.data.insert(s.data.end(), row_.begin() + std::ptrdiff_t(offset_[i]),
                          row_.begin() + std::ptrdiff_t(offset_[i] + size_t(s.width)));
        }
    }

    size_t rows() const { return epoch_.size(); }
    long long last_epoch() const { return epoch_.empty() ? 0 : epoch_.back(); }
    const std::vector<long long>& epochs() const { return epoch_; }
    const std::vector<Series>& series() const { return series_; }
    static double nan() { return std::numeric_limits<double>::quiet_NaN(); }

   private:
    std::vector<Series> series_;
    std::vector<size_t> offset_;
    std::vector<double> row_;
    std::vector<long long> epoch_;
};

// dnnkit.EarlyStopping's rule, evaluated on each reported row (the same comparisons, in double, as the
// Python class: `value < best - min_delta` improves; else wait += 1 and stop once wait >= patience).
template <class T>
struct NativeEarlyStopping {
    bool on = false;
    int monitor = -1;  // series id in the HistoryLog
    long long patience = 0;
    double min_delta = 0.0;
    bool restore_best = true;
    // state
    double best = std::numeric_limits<double>::infinity();
    long long best_epoch = 0;  // 0: none yet
    long long wait = 0;
    std::vector<T> best_theta;  // a bit-exact copy of theta at best_epoch (restore_best only)

    // Returns true when training should stop after this epoch.
    bool update(double value, long long epoch, const T* theta, size_t P) {
        if (value < best - min_delta) {
            best = value;
            best_epoch = epoch;
            wait = 0;
            if (restore_best) best_theta.assign(theta, theta + P);
            return false;
        }
        wait += 1;
        return wait >= patience;
    }
};

}  // namespace dnnkit
