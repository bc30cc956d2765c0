// Stop strings over streamed text: emits text as soon as it can no longer be the start of a stop
// string, and cuts the output where a stop string appears (the stop string itself is not emitted).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace marlin {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds generated text; returns what is safe to show now. After a stop string, returns the
  // text before it and stopped() turns true; later calls return nothing.
  std::string push(std::string_view text);
  // Releases text held back at the end of generation.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace marlin
