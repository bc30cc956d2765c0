// API key checks.
#pragma once

#include <optional>
#include <string_view>

namespace marlin::server {

// Whether `given` equals `expected` (non-empty), in time that depends only on given's length.
bool constant_time_equal(std::string_view expected, std::string_view given);

// The token of an "Authorization: Bearer <token>" header value ("bearer" in any case).
std::optional<std::string_view> bearer_token(std::string_view authorization);

}  // namespace marlin::server
