// A progress bar on stderr for long work (quantization, perplexity). On a terminal it redraws one
// line; otherwise (logs, CI) it prints a line at every 10% so logs stay short.
#pragma once

#include <chrono>
#include <string>

namespace marlin::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  // Sets the amount done and an optional note shown after the bar ("ppl 12.3").
  void update(int64_t done, const std::string& note = "");
  // Ends the line.
  void finish(const std::string& note = "");
  // A message on a line of its own ("label: message"), above the bar on a terminal.
  void message(const std::string& text);

 private:
  void draw(const std::string& note, bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  int last_decile_ = -1;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace marlin::cli
