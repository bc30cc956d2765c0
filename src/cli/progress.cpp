#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace marlin::cli {
namespace {

std::string format_duration(double seconds) {
  const int s = int(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ds", s);
  return buf;
}

}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), tty_(isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int64_t done, const std::string& note) {
  done_ = std::clamp<int64_t>(done, 0, total_);
  draw(note, false);
}

void ProgressBar::finish(const std::string& note) {
  done_ = total_;
  draw(note, true);
}

void ProgressBar::message(const std::string& text) {
  std::fprintf(stderr, "%s%s: %s\n", tty_ ? "\r\033[K" : "", label_.c_str(), text.c_str());
  if (tty_) draw("", false);
  std::fflush(stderr);
}

void ProgressBar::draw(const std::string& note, bool final) {
  const double fraction = double(done_) / double(total_);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string timing = final ? format_duration(elapsed)
                             : (done_ > 0 ? "ETA " + format_duration(elapsed / fraction - elapsed) : "");
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = int(fraction * kWidth);
    std::string bar(size_t(filled), '=');
    if (filled < kWidth) bar += '>' + std::string(size_t(kWidth - filled - 1), ' ');
    std::fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld %s %s\033[K", label_.c_str(), bar.c_str(), int(fraction * 100),
                 static_cast<long long>(done_), static_cast<long long>(total_), timing.c_str(), note.c_str());
    if (final) std::fputc('\n', stderr);
  } else {
    const int decile = int(fraction * 10);
    if (!final && (decile == last_decile_ || done_ == total_)) return;  // finish() prints 100%
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %3d%% %lld/%lld %s %s\n", label_.c_str(), int(fraction * 100),
                 static_cast<long long>(done_), static_cast<long long>(total_), timing.c_str(), note.c_str());
  }
  std::fflush(stderr);
}

}  // namespace marlin::cli
